"""ODE sampling and likelihoods on manifolds."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Literal

import geoopt
import torch
from torch import Tensor, nn

from fm_core.solver.integrate import check_finite_solution
from fm_core.solver.solver import Solver
from fm_core.solver.time_grid import fixed_step_grid, resolve_time_grid
from fm_core.utils.checks import (
    check_batch_size,
    check_floating,
    check_log_density,
)
from fm_riemann._checks import check_on_manifold
from fm_riemann.path.geodesic import check_manifold
from fm_riemann.solver.divergence import (
    check_embedded,
    divergence_exact,
    divergence_hutchinson,
)
from fm_riemann.solver.methods import METHODS, rk_step

__all__ = ["RiemannianODESolver"]


StepBy = Literal["projx", "expmap"]


class RiemannianODESolver(Solver):
    r"""Integrate $\dot x = u_t(x)$ on a manifold with fixed-step Runge-Kutta methods.

    ``method`` is ``"euler"`` (order 1), ``"midpoint"`` (2) or ``"rk4"`` (classical, 4). Each
    stage and step moves from the current point $x$ by an ambient increment $w$ in one of two
    ways (``step_by``):

    - ``"projx"`` (default, as the reference): $x \leftarrow \mathrm{projx}(x + w)$ (just $x + w$
      with ``projx=False``). The method keeps its order on embedded manifolds.
    - ``"expmap"``: $x \leftarrow \exp_x(P_x w)$, moving along geodesics (stays exactly on the
      manifold, no projection). Euler and midpoint keep orders 1 and 2; for rk4 the tangent
      combination of stage velocities at other points costs accuracy at $O(h^3)$ per step on
      curved manifolds, so expect order 2 there unless the manifold is flat.

    Args:
        manifold: a geoopt manifold with ``expmap``/``logmap`` (``Sphere``, ``FlatTorus``, ...).
        velocity_model: called as ``velocity_model(x=x, t=t, **model_extras)`` with ``x`` of shape
            ``[B, *point_shape]`` and ``t`` a 0-dim tensor; returns a vector of the shape of ``x``.
        check_points: check that ``x_init`` / ``x_1`` lie on the manifold (a value check: in eager
            mode on CPU tensors, see ``fm_core.utils.checks``).

    After each call, ``solver.last_nfe`` holds the number of model evaluations it made.

    Example:
        >>> import torch
        >>> from fm_riemann import Sphere
        >>> sphere = Sphere()
        >>> axis = torch.tensor([0.0, 0.0, 1.0])
        >>> field = lambda x, t: torch.linalg.cross(axis.expand_as(x), x)
        >>> solver = RiemannianODESolver(sphere, field)
        >>> x = solver.sample(torch.tensor([[1.0, 0.0, 0.0]]), step_size=0.01, method="rk4")
        >>> x  # rotated by 1 radian about z
        tensor([[0.5403, 0.8415, 0.0000]])
    """

    def __init__(
        self,
        manifold: geoopt.Manifold,
        velocity_model: nn.Module | Callable[..., Tensor],
        *,
        check_points: bool = True,
    ):
        super().__init__()
        check_manifold(manifold)
        if not callable(velocity_model):
            raise TypeError(f"velocity_model must be callable, got {type(velocity_model).__name__}")
        self.manifold = manifold
        self.velocity_model = velocity_model
        self.check_points = check_points
        self.last_nfe = 0

    # ----------------------------------------------------------------------------------------
    def _check_input(self, x: Tensor, name: str) -> None:
        check_floating(x, name)
        check_batch_size(x, name)
        checked = self.manifold._check_shape(x.shape, name)
        ok, reason = checked if isinstance(checked, tuple) else (checked, None)
        if not ok:
            raise ValueError(f"{name} has the wrong shape for {self.manifold.name}: {reason}")
        if self.check_points:  # a value check: eager mode on CPU (fm_core.utils.checks)
            check_on_manifold(
                self.manifold,
                x,
                name,
                hint="project it with manifold.projx, or pass check_points=False",
            )

    def _field(self, proju: bool, extras: dict[str, Any]) -> Callable[[Tensor, Tensor], Tensor]:
        checked = False
        self.last_nfe = 0

        def field(x: Tensor, t: Tensor) -> Tensor:
            nonlocal checked
            v = self.velocity_model(x=x, t=t, **extras)
            self.last_nfe += 1
            if not checked:
                if not isinstance(v, Tensor) or v.shape != x.shape:
                    got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
                    raise ValueError(
                        f"velocity_model must return a tensor of the shape of x, "
                        f"{tuple(x.shape)}, got {got}"
                    )
                checked = True
            return self.manifold.proju(x, v) if proju else v

        return field

    def _move(self, projx: bool, step_by: str) -> Callable[[Tensor, Tensor], Tensor]:
        m = self.manifold
        if step_by == "expmap":
            return lambda x, w: m.expmap(x, m.proju(x, w))
        if step_by != "projx":
            raise ValueError(f"step_by must be 'projx' or 'expmap', got {step_by!r}")
        return (lambda x, w: m.projx(x + w)) if projx else (lambda x, w: x + w)

    @staticmethod
    def _method(method: str):
        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        return METHODS[method]

    @staticmethod
    def _steps(grid: Tensor, verbose: bool):
        pairs = list(itertools.pairwise(grid))
        if verbose:
            try:
                from tqdm import tqdm

                return tqdm(pairs)
            except ImportError:  # progress bars are optional
                pass
        return pairs

    # ----------------------------------------------------------------------------------------
    def sample(
        self,
        x_init: Tensor,
        step_size: float | None,
        projx: bool = True,
        proju: bool = True,
        method: str = "euler",
        time_grid: Tensor | None = None,
        return_intermediates: bool = False,
        verbose: bool = False,
        enable_grad: bool = False,
        step_by: StepBy = "projx",
        **model_extras: Any,
    ) -> Tensor:
        r"""Solve the ODE from ``x_init`` at ``time_grid[0]`` to ``time_grid[-1]``.

        Args:
            x_init: points on the manifold, shape ``[B, *point_shape]``.
            step_size: largest step; ``None`` steps exactly on ``time_grid``.
            projx: project the state onto the manifold after each move (``step_by="projx"``).
            proju: project the velocity onto the tangent space at each evaluation.
            method: ``"euler"``, ``"midpoint"`` or ``"rk4"``.
            time_grid: 1-D strictly monotone times in $[0, 1]$, either direction, default
                ``[0, 1]``; integration starts at its first time and every time is hit exactly.
            return_intermediates: return the states at every time of ``time_grid``.
            verbose: show a progress bar (needs tqdm).
            enable_grad: keep the autograd graph through the solve.
            step_by: ``"projx"`` or ``"expmap"`` (see the class docstring).
            **model_extras: forwarded to the velocity model.

        Returns:
            The final state ``[B, *point_shape]``, or ``[len(time_grid), B, *point_shape]`` with
            ``return_intermediates``.
        """
        self._check_input(x_init, "x_init")
        rk = self._method(method)
        move = self._move(projx, step_by)
        grid = resolve_time_grid(time_grid, (0.0, 1.0), device=x_init.device, dtype=x_init.dtype)
        grid, index = fixed_step_grid(grid, step_size)
        field = self._field(proju, model_extras)
        states = [x_init]
        with torch.set_grad_enabled(enable_grad):
            x = x_init
            for t0, t1 in self._steps(grid, verbose):
                x, _ = rk_step(rk, lambda y, s: (field(y, s), None), move, x, t0, t1 - t0)
                if return_intermediates:
                    states.append(x)
        check_finite_solution(x, "the sample")
        if return_intermediates:
            return torch.stack([states[i] for i in index], dim=0)
        return x

    def compute_likelihood(
        self,
        x_1: Tensor,
        log_p0: Callable[[Tensor], Tensor],
        step_size: float | None,
        method: str = "euler",
        time_grid: Tensor | None = None,
        return_intermediates: bool = False,
        exact_divergence: bool = False,
        enable_grad: bool = False,
        projx: bool = True,
        proju: bool = True,
        step_by: StepBy = "projx",
        generator: torch.Generator | None = None,
        **model_extras: Any,
    ) -> tuple[Tensor, Tensor]:
        r"""Log-likelihood $\log p_1(x_1)$ of the flow, by integrating backwards to the source.

        Along the flow $\frac{d}{dt}\log p_t(x_t) = -\mathrm{div}_M u_t(x_t)$, so
        $\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \mathrm{div}_M u_t(x_t)\,dt$, with
        $\mathrm{div}_M u = \mathrm{tr}(P_x\,\partial u/\partial x\,P_x)$ computed in ambient
        coordinates ($P_x$ = ``manifold.proju``; the identity on the flat torus). Densities are with
        respect to the Riemannian volume (area on $S^2$: uniform is $1/4\pi$).

        Args:
            x_1: target points, shape ``[B, *point_shape]``.
            log_p0: source log-density, ``[B, *point_shape] -> [B]``.
            step_size: largest step, or ``None`` to step on ``time_grid``.
            method: ``"euler"``, ``"midpoint"`` or ``"rk4"``.
            time_grid: monotone times, default ``[1, 0]``; ``x_1`` is at its first time and
                ``log_p0`` is the density at its last.
            return_intermediates: return the states at every time of ``time_grid``.
            exact_divergence: exact trace ($D$ backward passes, $D$ = ambient size of a point)
                or, if ``False``, Hutchinson's estimate with one ambient Gaussian $z$ per solve,
                projected to the tangent space at each evaluation.
            enable_grad: keep the graph (train through the likelihood).
            projx: as in ``sample``.
            proju: as in ``sample``.
            step_by: as in ``sample``.
            generator: random generator for Hutchinson's noise.
            **model_extras: forwarded to the velocity model.

        Returns:
            ``(x_0, log_likelihood)``: the source points (``[B, *point_shape]``, or
            ``[len(time_grid), B, *point_shape]`` with ``return_intermediates``) and
            $\log p_1(x_1)$ of shape ``[B]``.
        """
        self._check_input(x_1, "x_1")
        check_embedded(self.manifold)
        if not callable(log_p0):
            raise TypeError(f"log_p0 must be callable, got {type(log_p0).__name__}")
        rk = self._method(method)
        move = self._move(projx, step_by)
        grid = resolve_time_grid(time_grid, (1.0, 0.0), device=x_1.device, dtype=x_1.dtype)
        grid, index = fixed_step_grid(grid, step_size)
        field = self._field(proju, model_extras)
        z = None
        if not exact_divergence:
            z = torch.randn(x_1.shape, generator=generator, dtype=x_1.dtype, device=x_1.device)

        def augmented(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
            with torch.enable_grad():
                x_in = x if x.requires_grad else x.detach().requires_grad_(True)
                u = field(x_in, t)
                if exact_divergence:
                    div = divergence_exact(self.manifold, u, x_in, create_graph=enable_grad)
                else:
                    div = divergence_hutchinson(self.manifold, u, x_in, z, create_graph=enable_grad)
            if not enable_grad:
                u, div = u.detach(), div.detach()
            return u, div

        states = [x_1]
        # integral of div over the grid, oriented: log p_first(x) = log p_last(x_end) + sum(div * dt)
        int_div = torch.zeros(x_1.shape[0], dtype=x_1.dtype, device=x_1.device)
        with torch.set_grad_enabled(enable_grad):
            x = x_1
            for t0, t1 in self._steps(grid, False):
                x, d_int = rk_step(rk, augmented, move, x, t0, t1 - t0)
                int_div = int_div + d_int
                if return_intermediates:
                    states.append(x)
            log_source = check_log_density(log_p0(x), x_1.shape[0])
            log_p1 = log_source + int_div
        check_finite_solution(x, "the source point x_0")
        check_finite_solution(log_p1, "log_p1")
        if return_intermediates:
            return torch.stack([states[i] for i in index], dim=0), log_p1
        return x, log_p1
