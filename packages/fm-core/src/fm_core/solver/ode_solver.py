r"""``ODESolver``: sampling and log-likelihoods of a velocity field $\dot x_t = u_t(x_t)$."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fm_core.solver.divergence import ExactDivergence, HutchinsonDivergence
from fm_core.solver.integrate import ModelCall, check_finite_solution, integrate, time_dtype
from fm_core.solver.registry import get_method
from fm_core.solver.solver import Solver
from fm_core.solver.time_grid import resolve_time_grid
from fm_core.utils.checks import (
    check_batch_size,
    check_floating,
    check_log_density,
)

__all__ = ["ODESolver"]


class ODESolver(Solver):
    r"""Integrate the flow ODE $\frac{d}{dt} x_t = u_t(x_t)$ of a velocity model.

    The model is called as ``velocity_model(x=x, t=t, **model_extras)`` with ``x`` of shape
    ``[B, ...]`` and ``t`` a **0-dim tensor** (one time for the whole batch; broadcast it inside
    the model, or wrap the model in a ``ModelWrapper`` that does), and must return a tensor of
    ``x``'s shape. Methods (``method=``): ``"euler"`` (order 1), ``"midpoint"`` (2), ``"heun2"``
    (2), ``"rk4"`` (4), adaptive ``"dopri5"`` (5, controlled by ``atol``/``rtol``), and any other
    torchdiffeq method name when torchdiffeq is installed.

    After each call, ``solver.last_nfe`` holds the number of model evaluations it made (forward
    pass only; recomputation in a checkpointed backward pass is not counted).

    Args:
        velocity_model: a callable / ``nn.Module`` taking ``x`` and ``t`` by keyword.

    Example:
        >>> solver = ODESolver(velocity_model=lambda x, t: -x)
        >>> x_1 = solver.sample(torch.randn(8, 2), step_size=0.05, method="midpoint")
        >>> solver.last_nfe
        40
    """

    def __init__(self, velocity_model: Callable[..., Tensor]):
        super().__init__()
        if not callable(velocity_model):
            raise TypeError(f"velocity_model must be callable, got {type(velocity_model).__name__}")
        self.velocity_model = velocity_model
        self.last_nfe = 0

    # ------------------------------------------------------------------ checks
    def _prepare(self, x, step_size, method, atol, rtol, time_grid, default, name="x_init"):
        check_floating(x, name)
        check_batch_size(x, name)
        m = get_method(method)
        grid = resolve_time_grid(time_grid, default, device=x.device, dtype=time_dtype(x))
        if m.adaptive:
            if step_size is not None:
                raise ValueError(
                    f"step_size must be None for the adaptive method {method!r} (it picks its "
                    f"own steps from atol/rtol), got {step_size!r}"
                )
            for arg, val in (("atol", atol), ("rtol", rtol)):
                if isinstance(val, bool) or not isinstance(val, (int, float)) or not val > 0:
                    raise ValueError(f"{arg} must be a positive number, got {val!r}")
        elif step_size is None and time_grid is None:
            raise ValueError(
                f"step_size is required for the fixed-step method {method!r} (e.g. "
                "step_size=0.05), unless time_grid gives the steps"
            )
        elif step_size is not None and (
            isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or step_size <= 0
        ):
            raise ValueError(f"step_size must be a positive number or None, got {step_size!r}")
        return m, grid

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        x_init: Tensor,
        step_size: float | None,
        method: str = "euler",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        time_grid: Tensor | Sequence[float] | None = None,
        return_intermediates: bool = False,
        enable_grad: bool = False,
        checkpoint_steps: bool = False,
        **model_extras,
    ) -> Tensor:
        r"""Integrate from ``x_init`` at ``time_grid[0]`` to ``time_grid[-1]``.

        Args:
            x_init: initial states, e.g. source samples $X_0 \sim p$, shape ``[B, ...]``.
            step_size: largest step of a fixed-step method: each interval of ``time_grid`` is cut
                into equal steps no larger than it, so every grid time is hit exactly. ``None``:
                the steps are the grid's own (required for adaptive methods).
            method: a name from ``fm_core.solver.METHODS`` or a torchdiffeq method.
            atol: absolute tolerance of adaptive methods.
            rtol: relative tolerance of adaptive methods.
            time_grid: 1-D strictly monotone times in $[0, 1]$, shape ``[T]``; descending
                integrates backwards. ``None``: ``[0, 1]``. See ``karras_time_grid``.
            return_intermediates: return the states at every time of ``time_grid``.
            enable_grad: record the autograd graph (gradients to ``x_init`` and the model's
                parameters).
            checkpoint_steps: with ``enable_grad``, checkpoint every step so that activation
                memory does not grow with the number of steps; each step's model evaluations run
                again in backward (about 1.3x the time of a plain backward). Off by default.
            **model_extras: forwarded to the model (labels, conditioning, guidance scale).

        Returns:
            The end state, shape ``[B, ...]``, or with ``return_intermediates`` the states at the
            grid times, shape ``[T, B, ...]``.

        Raises:
            ValueError: an unknown method, a bad grid, a missing step size, an empty batch, a
                model output whose shape is not ``x_init``'s (checked at the first evaluation),
                or (a value check, eager mode on CPU by default: see
                docs/fm-core/validation.md) a non-finite end state, i.e. the model returned NaN
                or inf. On a GPU or under ``torch.compile`` such samples come back unchecked
                unless ``fm_core.utils.value_checks("always")`` (one sync, at the end).
        """
        m, grid = self._prepare(x_init, step_size, method, atol, rtol, time_grid, (0.0, 1.0))
        call = ModelCall(self.velocity_model, model_extras)
        use_ckpt = bool(checkpoint_steps) and enable_grad
        with torch.set_grad_enabled(enable_grad):
            states = integrate(
                lambda t, y: (call(y[0], t),), (x_init,), grid, m, step_size=step_size,
                atol=atol, rtol=rtol, use_checkpoint=use_ckpt,
            )  # fmt: skip
        self.last_nfe = call.nfe
        check_finite_solution(states[-1][0], "the sample")
        if return_intermediates:
            return torch.stack([s[0] for s in states])
        return states[-1][0]

    # ------------------------------------------------------------------ likelihoods
    def _log_det_dynamics(self, call, x, exact, divergence, num_probes, probe, generator, chunk):
        if divergence is None:
            divergence = "exact" if exact else "hutchinson"
        if divergence == "exact":
            estimator = ExactDivergence(x, chunk)
        elif divergence == "hutchinson":
            estimator = HutchinsonDivergence(x, num_probes, probe, generator)
        else:
            raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")

        def dynamics(t: Tensor, y):
            x_t = y[0]
            graph = torch.is_grad_enabled()
            with torch.enable_grad():
                if not (graph and x_t.requires_grad):
                    x_t = x_t.detach().requires_grad_(True)
                u = call(x_t, t)
                # A velocity with no graph to x_t (u = 0, a constant field) has divergence 0.
                div = (
                    estimator(u, x_t, create_graph=graph)
                    if u.requires_grad
                    else u.new_zeros(len(u))
                )
            if not graph:
                u, div = u.detach(), div.detach()
            return u, div.to(y[1].dtype)

        return dynamics

    def _solve_with_log_det(
        self, x, log_p0, ends, name, *, step_size, method, atol, rtol, time_grid, enable_grad,
        checkpoint_steps, exact_divergence, divergence, num_probes, probe, generator,
        divergence_chunk_size, model_extras,
    ):  # fmt: skip
        """Integrate ``(x, int div u dt)`` over a grid running from ``ends[0]`` to ``ends[1]``.

        Shared by ``compute_likelihood`` (1 -> 0) and ``sample_with_likelihood`` (0 -> 1); every
        argument is checked before the first step. Returns the states at the grid times.
        """
        m, grid = self._prepare(x, step_size, method, atol, rtol, time_grid, ends, name)
        got = grid[[0, -1]].tolist()
        if got != list(ends):
            raise ValueError(
                f"time_grid must start at {ends[0]} and end at {ends[1]}, got ends {got}"
            )
        if not callable(log_p0):
            raise TypeError(f"log_p0 must be callable, got {type(log_p0).__name__}")
        call = ModelCall(self.velocity_model, model_extras)
        dyn = self._log_det_dynamics(call, x, exact_divergence, divergence, num_probes, probe,
                                     generator, divergence_chunk_size)  # fmt: skip
        use_ckpt = bool(checkpoint_steps) and enable_grad
        log_det0 = torch.zeros(x.shape[0], device=x.device, dtype=time_dtype(x))
        with torch.set_grad_enabled(enable_grad):
            states = integrate(dyn, (x, log_det0), grid, m, step_size=step_size, atol=atol,
                               rtol=rtol, use_checkpoint=use_ckpt)  # fmt: skip
        self.last_nfe = call.nfe
        return states

    def compute_likelihood(
        self,
        x_1: Tensor,
        log_p0: Callable[[Tensor], Tensor],
        step_size: float | None,
        method: str = "euler",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        time_grid: Tensor | Sequence[float] | None = None,
        return_intermediates: bool = False,
        exact_divergence: bool = False,
        enable_grad: bool = False,
        divergence: str | None = None,
        num_probes: int = 1,
        probe: str = "rademacher",
        generator: torch.Generator | None = None,
        divergence_chunk_size: int | None = None,
        checkpoint_steps: bool = False,
        **model_extras,
    ) -> tuple[Tensor, Tensor]:
        r"""Log-likelihood of ``x_1`` by integrating backwards from $t=1$ to $t=0$.

        Uses the instantaneous change of variables
        $\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\cdot u_t(x_t)\,dt$, integrating the
        state and $\int \nabla\cdot u$ together.

        Args:
            x_1: target samples, shape ``[B, ...]``.
            log_p0: log-density of the source, ``[B, ...] -> [B]`` (exactly ``[B]``: a ``[B, 1]`` or
                0-dim result raises ``ValueError`` rather than broadcasting).
            step_size: as in ``sample``.
            method: as in ``sample``.
            atol: as in ``sample``.
            rtol: as in ``sample``.
            time_grid: must start at 1 and end at 0; ``None``: ``[1, 0]``.
            return_intermediates: return the states at the grid times (``[T, B, ...]``).
            exact_divergence: the reference's switch: ``True`` for ``divergence="exact"``,
                ``False`` (default) for ``"hutchinson"``.
            enable_grad: gradients of ``log_p1`` to the model's parameters and ``x_1``
                (maximum-likelihood training).
            divergence: ``"exact"`` or ``"hutchinson"``; overrides ``exact_divergence``.
            num_probes: Hutchinson probes $K$ (drawn once, reused at every step).
            probe: ``"rademacher"`` or ``"gaussian"``.
            generator: ``torch.Generator`` for the probes.
            divergence_chunk_size: basis vectors per batched backward pass of the exact
                divergence (bounds memory; default keeps about $2^{24}$ elements per chunk).
            checkpoint_steps: checkpoint every step (bounded activation memory). Off by default:
                here each step computes the divergence with ``autograd.grad``, which makes the
                checkpoint recompute the step already in the forward pass (midpoint, 20 steps:
                100 model calls instead of 40 forward, 140 in all), so training through the
                likelihood runs several times slower. Turn it on only when memory is the limit.
            **model_extras: forwarded to the model.

        Returns:
            ``(x_0, log_p1)``: the source point, shape ``[B, ...]`` (or ``[T, B, ...]`` with
            ``return_intermediates``), and $\log p_1(x_1)$, shape ``[B]``, in float64 for
            float64 input, else float32.

        Example:
            >>> solver = ODESolver(lambda x, t: torch.zeros_like(x))  # the identity flow
            >>> log_p0 = lambda x: -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)  # N(0, I) in 2-D
            >>> x_1 = torch.zeros(1, 2)
            >>> x_0, log_p1 = solver.compute_likelihood(x_1, log_p0, step_size=0.05,
            ...                                         exact_divergence=True)
            >>> log_p1  # log N(0; 0, I) = -log(2 pi)
            tensor([-1.8379])
        """
        states = self._solve_with_log_det(
            x_1,
            log_p0,
            (1.0, 0.0),
            "x_1",
            step_size=step_size,
            method=method,
            atol=atol,
            rtol=rtol,
            time_grid=time_grid,
            enable_grad=enable_grad,
            checkpoint_steps=checkpoint_steps,
            exact_divergence=exact_divergence,
            divergence=divergence,
            num_probes=num_probes,
            probe=probe,
            generator=generator,
            divergence_chunk_size=divergence_chunk_size,
            model_extras=model_extras,
        )
        x_0, integral = states[-1]
        with torch.set_grad_enabled(enable_grad):
            log_source = check_log_density(log_p0(x_0), x_1.shape[0])
            log_p1 = log_source + integral  # integral = int_1^0 div dt = -int_0^1 div dt
        check_finite_solution(x_0, "the source point x_0")
        check_finite_solution(log_p1, "log_p1")
        if return_intermediates:
            return torch.stack([s[0] for s in states]), log_p1
        return x_0, log_p1

    def sample_with_likelihood(
        self,
        x_init: Tensor,
        log_p0: Callable[[Tensor], Tensor],
        step_size: float | None,
        method: str = "euler",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        time_grid: Tensor | Sequence[float] | None = None,
        return_intermediates: bool = False,
        exact_divergence: bool = True,
        enable_grad: bool = False,
        divergence: str | None = None,
        num_probes: int = 1,
        probe: str = "rademacher",
        generator: torch.Generator | None = None,
        divergence_chunk_size: int | None = None,
        checkpoint_steps: bool = False,
        **model_extras,
    ) -> tuple[Tensor, Tensor]:
        r"""Samples and their model log-likelihood in one forward integration from $t=0$ to 1.

        $\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\cdot u_t(x_t)\,dt$ along the same
        trajectory that produces the sample; no second (backward) solve is needed. Arguments as
        in ``compute_likelihood`` (the exact divergence is the default here); ``time_grid``
        must start at 0 and end at 1 (``None``: ``[0, 1]``).

        Returns:
            ``(x_1, log_p1)``: samples ``[B, ...]`` (or ``[T, B, ...]``) and $\log p_1$, ``[B]``.

        Example:
            >>> solver = ODESolver(lambda x, t: -x)  # contracts by e^{-t}: log p rises by D
            >>> log_p0 = lambda x: -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)
            >>> x_0 = torch.zeros(1, 2)
            >>> x_1, log_p1 = solver.sample_with_likelihood(x_0, log_p0, step_size=0.05)
            >>> log_p1  # -log(2 pi) + 2
            tensor([0.1621])
        """
        states = self._solve_with_log_det(
            x_init,
            log_p0,
            (0.0, 1.0),
            "x_init",
            step_size=step_size,
            method=method,
            atol=atol,
            rtol=rtol,
            time_grid=time_grid,
            enable_grad=enable_grad,
            checkpoint_steps=checkpoint_steps,
            exact_divergence=exact_divergence,
            divergence=divergence,
            num_probes=num_probes,
            probe=probe,
            generator=generator,
            divergence_chunk_size=divergence_chunk_size,
            model_extras=model_extras,
        )
        with torch.set_grad_enabled(enable_grad):
            log_p_init = check_log_density(log_p0(x_init), x_init.shape[0])
        x_1, integral = states[-1]
        log_p1 = log_p_init - integral
        check_finite_solution(x_1, "the sample")
        check_finite_solution(log_p1, "log_p1")
        if return_intermediates:
            return torch.stack([s[0] for s in states]), log_p1
        return x_1, log_p1
