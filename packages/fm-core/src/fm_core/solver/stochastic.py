r"""Euler–Maruyama sampling of a Gaussian affine path with the same marginals as the flow ODE."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fm_core.path.affine import AffineProbPath
from fm_core.solver.integrate import ModelCall, time_dtype
from fm_core.solver.solver import Solver
from fm_core.solver.time_grid import fixed_step_grid, resolve_time_grid
from fm_core.utils.checks import check_batch_size, check_floating, check_open_unit

__all__ = ["EulerMaruyamaSolver"]


class EulerMaruyamaSolver(Solver):
    r"""Stochastic sampler for a velocity model trained on a Gaussian affine path.

    For an affine path $x_t = \sigma_t x_0 + \alpha_t x_1$ with source $x_0 \sim N(0, I)$, the
    velocity gives the noise prediction $\hat\epsilon$ through
    ``path.velocity_to_epsilon`` and the score $\nabla \log p_t(x) = -\hat\epsilon / \sigma_t$.
    For any $g_t \ge 0$, the SDE
    $$dx = \big[u_t(x) + \tfrac{g_t^2}{2} \nabla\log p_t(x)\big] dt + g_t\, dW_t$$
    has the same marginals $p_t$ as the ODE $dx = u_t(x)\,dt$. We take $g_t = \eta\,\sigma_t$
    with the noise scale $\eta \ge 0$, so the drift is $u_t - \tfrac{\eta^2 \sigma_t}{2}\hat\epsilon$:
    the score's $1/\sigma_t$ cancels and nothing blows up as $\sigma_t \to 0$ at $t = 1$, and the
    noise vanishes there. $\eta = 0$ is exactly the Euler ODE sampler. The Euler–Maruyama step is
    $x_{n+1} = x_n + h\,\text{drift}(t_n, x_n) + \eta\,\sigma_{t_n}\sqrt{h}\,\xi_n$,
    $\xi_n \sim N(0, I)$; it has strong order 1/2 and weak order 1, and the injected noise
    corrects accumulated discretisation error, which can buy sample quality for NFE.

    Guard: the converter divides by $\alpha_t\dot\sigma_t - \dot\alpha_t\sigma_t$ (for CondOT
    $-1$); it is evaluated at $t$ clipped to $[t_\epsilon, 1 - t_\epsilon]$ so that schedulers
    singular at the end points stay finite. The model is called as in ``ODESolver``
    (``t`` a 0-dim tensor); ``last_nfe`` counts its evaluations.

    Args:
        velocity_model: callable ``(x=..., t=..., **extras) -> velocity`` of ``x``'s shape.
        path: the ``AffineProbPath`` the model was trained on (source $N(0, I)$).

    Example:
        >>> model = lambda x, t: -x  # a velocity trained on the CondOT path
        >>> solver = EulerMaruyamaSolver(model, CondOTProbPath())
        >>> x_1 = solver.sample(torch.randn(64, 2), step_size=0.01, noise_scale=1.0)
    """

    def __init__(self, velocity_model: Callable[..., Tensor], path: AffineProbPath):
        super().__init__()
        if not callable(velocity_model):
            raise TypeError(f"velocity_model must be callable, got {type(velocity_model).__name__}")
        if not isinstance(path, AffineProbPath):
            raise TypeError(
                f"path must be an AffineProbPath (Gaussian source), got {type(path).__name__}"
            )
        self.velocity_model = velocity_model
        self.path = path
        self.last_nfe = 0

    def sample(
        self,
        x_init: Tensor,
        step_size: float | None,
        method: str = "euler_maruyama",
        time_grid: Tensor | Sequence[float] | None = None,
        return_intermediates: bool = False,
        enable_grad: bool = False,
        *,
        noise_scale: float = 1.0,
        generator: torch.Generator | None = None,
        t_eps: float = 1e-3,
        **model_extras,
    ) -> Tensor:
        r"""Sample from ``x_init`` (source noise, shape ``[B, ...]``) at ``time_grid[0]``.

        Args:
            x_init: initial states, shape ``[B, ...]``.
            step_size: largest step; each grid interval is cut into equal steps (``None``: the
                grid's own steps, then ``time_grid`` is required).
            method: only ``"euler_maruyama"``.
            time_grid: increasing times in $[0, 1]$; ``None``: ``[0, 1]``.
            return_intermediates: return the states at the grid times, ``[T, B, ...]``.
            enable_grad: record the autograd graph.
            noise_scale: $\eta \ge 0$; 0 gives the deterministic Euler ODE sampler.
            generator: ``torch.Generator`` for the noise.
            t_eps: clip for the converter's time, in $(0, 0.5)$ (see the class docstring).
            **model_extras: forwarded to the model.

        Returns:
            Samples, shape ``[B, ...]``, or ``[T, B, ...]`` with ``return_intermediates``.
        """
        check_floating(x_init, "x_init")
        check_batch_size(x_init, "x_init")
        check_open_unit(t_eps, "t_eps")
        if not t_eps < 0.5:  # the converter's time is clamped to [t_eps, 1 - t_eps]
            raise ValueError(f"t_eps must lie in (0, 0.5), got {t_eps!r}")
        if method != "euler_maruyama":
            raise ValueError(f"method must be 'euler_maruyama', got {method!r}")
        if (
            isinstance(noise_scale, bool)
            or not isinstance(noise_scale, (int, float))
            or not (noise_scale >= 0)
        ):
            raise ValueError(f"noise_scale must be a number >= 0, got {noise_scale!r}")
        if step_size is None and time_grid is None:
            raise ValueError(
                "step_size is required (e.g. step_size=0.01) unless time_grid is given"
            )
        grid = resolve_time_grid(time_grid, (0.0, 1.0), device=x_init.device,
                                 dtype=time_dtype(x_init))  # fmt: skip
        if not bool(grid[-1] > grid[0]):
            raise ValueError(
                "time_grid must be increasing: the SDE runs from noise (0) to data (1)"
            )
        grid, index = fixed_step_grid(grid, step_size)
        keep = set(index[1:])
        t_all = grid[:-1]
        dt_all = grid.diff()
        sigma = self.path.scheduler(t_all).sigma_t
        noise_coef = (noise_scale * sigma * dt_all.sqrt()).unbind()
        drift_coef = (0.5 * noise_scale**2 * sigma).unbind()
        t_clip = t_all.clamp(t_eps, 1 - t_eps).unbind()
        call = ModelCall(self.velocity_model, model_extras)
        x, out = x_init, [x_init]
        with torch.set_grad_enabled(enable_grad):
            for i, (t, dt) in enumerate(zip(t_all.unbind(), dt_all.unbind(), strict=True)):
                u = call(x, t)
                if noise_scale > 0:
                    eps = self.path.velocity_to_epsilon(u.to(x.dtype), x, t_clip[i])
                    u = u - drift_coef[i] * eps
                    xi = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                    x = torch.addcmul(torch.addcmul(x, dt, u), noise_coef[i], xi)
                else:
                    x = torch.addcmul(x, dt, u)
                if i + 1 in keep:
                    out.append(x)
        self.last_nfe = call.nfe
        return torch.stack(out) if return_intermediates else x
