r"""The memoryless noise schedule of an affine path and the SDE sampler that uses it.

For an affine path $x_t = \alpha_t x_1 + \sigma_t x_0$ (``t = 0`` noise, ``t = 1`` data,
$x_0 \sim N(0, I)$) with marginal velocity $v_t$, the score is
$\nabla \log p_t(x) = (v_t(x) - \frac{\dot\alpha_t}{\alpha_t} x) / \eta_t$ with
$$\eta_t = \sigma_t\Big(\frac{\dot\alpha_t}{\alpha_t}\sigma_t - \dot\sigma_t\Big),$$
so the SDE $dX = [v_t + \tfrac{g_t^2}{2}\nabla\log p_t]\,dt + g_t\,dB$ keeps the marginals
$p_t$ for every $g_t$. The *memoryless* choice $g_t^2 = 2\eta_t$ (Domingo-Enrich et al., 2025,
"Adjoint Matching", appendix) gives
$$dX = \Big(2 v_t(X) - \frac{\dot\alpha_t}{\alpha_t} X\Big) dt + \sqrt{2\eta_t}\, dB,$$
whose noise is infinite at $t = 0$: $X_1$ is independent of $X_0$, which is what makes the
reward-tilted optimum of the control problem equal to $p_{\text{base}}\, e^{r}$ (no value-function
bias from the initial state). For CondOT ($\alpha_t = t$, $\sigma_t = 1 - t$):
$\eta_t = (1 - t)/t$ and the drift is $2 v_t(x) - x/t$.

Both are singular at $t = 0$, so the sampler does not take Euler–Maruyama steps there. Each step
from $t$ to $s > t$ draws from the Gaussian that the memoryless SDE reaches exactly when the
data is the point $\hat x_1 = E[x_1 \mid x_t]$ read off the velocity (the ancestral, DDPM-like
step): with $k = \alpha_t/\alpha_s$ and $c^2 = \sigma_t^2 - k^2\sigma_s^2$,
$$X_s \sim N\Big(\frac{\alpha_s c^2 \hat x_1 + k\sigma_s^2 X_t}{\sigma_t^2},\;
\frac{\sigma_s^2 c^2}{\sigma_t^2} I\Big).$$
At $t = 0$ ($k = 0$) this is $N(\alpha_s \hat x_1, \sigma_s^2 I)$, independent of $X_0$ (memoryless
exactly); at $s = 1$ it returns $\hat x_1$. It is a consistent first-order discretisation of the SDE
above: the mean is exact for any data, and the variance misses
$(\alpha_s c^2/\sigma_t^2)^2 \operatorname{Var}[x_1 \mid x_t] = O(h^2)$ per step, $O(h)$ in all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fm_core.path.scheduler import Scheduler
from fm_core.utils.checks import check_batch_size, check_floating

__all__ = ["ancestral_step", "memoryless_eta", "memoryless_sample", "velocity_to_x1"]


def memoryless_eta(scheduler: Scheduler, t: Tensor) -> Tensor:
    r"""$\eta_t = \sigma_t(\frac{\dot\alpha_t}{\alpha_t}\sigma_t - \dot\sigma_t)$; the memoryless
    diffusion is $g_t = \sqrt{2\eta_t}$ (infinite at $t = 0$ where $\alpha_0 = 0$).

    Args:
        scheduler: the path's scheduler.
        t: times, any shape.

    Returns:
        $\eta_t$, the shape of ``t``. CondOT: $(1 - t)/t$.

    Example:
        >>> memoryless_eta(CondOTScheduler(), torch.tensor([0.25, 0.5]))
        tensor([3., 1.])
    """
    c = scheduler(t)
    return c.sigma_t * (c.d_alpha_t / c.alpha_t * c.sigma_t - c.d_sigma_t)


def velocity_to_x1(scheduler: Scheduler, v: Tensor, x: Tensor, t: Tensor) -> Tensor:
    r"""$\hat x_1 = (\sigma_t v - \dot\sigma_t x)/(\dot\alpha_t\sigma_t - \alpha_t\dot\sigma_t)$, finite
    on $[0, 1]$ (CondOT: $x + (1 - t)v$). ``t`` is 0-dim."""
    c = scheduler(t)
    return (c.sigma_t * v - c.d_sigma_t * x) / (c.d_alpha_t * c.sigma_t - c.alpha_t * c.d_sigma_t)


def ancestral_step(
    scheduler: Scheduler, x: Tensor, x1_hat: Tensor, t: Tensor, s: Tensor, noise: Tensor
) -> Tensor:
    r"""One memoryless step from ``t`` to ``s > t`` (0-dim times) given $\hat x_1$ and standard
    normal ``noise`` of ``x``'s shape (see the module docstring). Pure tensor code: it compiles
    with ``fullgraph=True``; needs $\sigma_t > 0$ ($t < 1$)."""
    ct, cs = scheduler(t), scheduler(s)
    k = ct.alpha_t / cs.alpha_t
    c2 = (ct.sigma_t**2 - (k * cs.sigma_t) ** 2).clamp_min(0.0)
    st2 = ct.sigma_t**2
    mean = (cs.alpha_t * c2 * x1_hat + k * cs.sigma_t**2 * x) / st2
    return mean + (cs.sigma_t**2 * c2 / st2).sqrt() * noise


def _grid(time_grid, x: Tensor) -> Tensor:
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if time_grid is None:
        raise ValueError("time_grid is required, e.g. torch.linspace(0, 1, 41)")
    grid = torch.as_tensor(time_grid, dtype=dtype, device=x.device)
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(
            f"time_grid must be 1-D with at least 2 times, got shape {tuple(grid.shape)}"
        )
    if not bool((grid.diff() > 0).all()) or bool(grid[0] < 0) or bool(grid[-1] > 1):
        raise ValueError("time_grid must increase strictly within [0, 1] (0 noise, 1 data)")
    return grid


def memoryless_sample(
    velocity_model: Callable[..., Tensor],
    x_init: Tensor,
    scheduler: Scheduler,
    time_grid: Tensor | Sequence[float],
    *,
    generator: torch.Generator | None = None,
    return_intermediates: bool = True,
    **model_extras,
) -> Tensor:
    r"""Sample the memoryless SDE of ``velocity_model`` with ancestral steps, without gradients.

    Args:
        velocity_model: callable ``(x=..., t=..., **extras) -> velocity`` (``t`` 0-dim), e.g. the
            fine-tuned model during Adjoint Matching or the base model.
        x_init: states at ``time_grid[0]``, shape ``[B, ...]`` (source noise when it is 0; the
            first step forgets them then).
        scheduler: the affine path's scheduler the model was trained with.
        time_grid: strictly increasing times in $[0, 1]$, ``[K + 1]``.
        generator: for the noise.
        return_intermediates: return the whole trajectory ``[K + 1, B, ...]`` (what
            ``lean_adjoint`` and ``AdjointMatchingLoss`` take); else the end state ``[B, ...]``.
        **model_extras: forwarded to the model (e.g. ``label``).

    Example:
        >>> from fm_core.testing import GaussianFlow
        >>> flow = GaussianFlow(torch.zeros(2), 1.0)
        >>> traj = memoryless_sample(flow, torch.randn(64, 2), CondOTScheduler(),
        ...                          torch.linspace(0, 1, 41))
        >>> traj.shape
        torch.Size([41, 64, 2])
    """
    if not callable(velocity_model):
        raise TypeError(f"velocity_model must be callable, got {type(velocity_model).__name__}")
    check_floating(x_init, "x_init")
    check_batch_size(x_init, "x_init")
    grid = _grid(time_grid, x_init)
    if not isinstance(scheduler, Scheduler):
        raise TypeError(f"scheduler must be a Scheduler, got {type(scheduler).__name__}")
    x, out = x_init, [x_init]
    with torch.no_grad():
        for t, s in zip(grid[:-1].unbind(), grid[1:].unbind(), strict=True):
            v = velocity_model(x=x, t=t, **model_extras)
            if v.shape != x.shape:
                raise ValueError(
                    f"velocity_model output must have the shape of x {tuple(x.shape)}, "
                    f"got {tuple(v.shape)}"
                )
            x1_hat = velocity_to_x1(scheduler, v.to(x.dtype), x, t)
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = ancestral_step(scheduler, x, x1_hat, t, s, noise)
            if return_intermediates:
                out.append(x)
    return torch.stack(out) if return_intermediates else x
