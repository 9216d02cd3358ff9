"""ODE sampling and likelihoods on manifolds: a front-end on fm-core's one integrator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import geoopt
import torch
from torch import Tensor, nn

from fm_core.solver._front import FlowSolver, divergence_name
from fm_core.solver._moves import manifold_move
from fm_core.solver.divergence import Divergence
from fm_riemann._checks import check_on_manifold
from fm_riemann.manifolds._volume import volume_of
from fm_riemann.path.geodesic import check_manifold

__all__ = ["RiemannianODESolver"]


StepBy = Literal["projx", "expmap"]


def _unscaled(manifold):
    r"""The same points with ``expmap`` of coordinate velocities, for the ``"expmap"`` move.

    ``geoopt.Scaled(base, s)`` writes a coordinate velocity $w$ as the tangent vector $s w$
    (``expmap(x, u) = base.expmap(x, u / s)``), while the solver's velocities are $\dot x$:
    stepping by ``expmap`` of a ``Scaled`` manifold would move $s$ times too slowly. Its base
    (same points, ``projx`` and ``proju``) moves right.
    """
    if isinstance(manifold, geoopt.Scaled):
        return _unscaled(manifold.base)
    if isinstance(manifold, geoopt.ProductManifold):
        factors = [_unscaled(m) for m in manifold.manifolds]
        if all(f is m for f, m in zip(factors, manifold.manifolds)):
            return manifold
        return geoopt.ProductManifold(*zip(factors, manifold.shapes))
    return manifold


class RiemannianODESolver(FlowSolver):
    r"""Integrate $\dot x = u_t(x)$ on a manifold with fixed-step Runge-Kutta methods.

    The methods are fm-core's (one integrator, one Butcher tableau per method): ``"euler"``
    (order 1), ``"midpoint"`` (2), ``"heun2"`` (2), ``"rk4"`` (classical, 4) and adaptive
    ``"dopri5"`` (``atol``/``rtol``). Each stage and step moves from the current point $x$ by an ambient increment $w$ in one of two
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
        check_manifold(manifold)
        super().__init__(velocity_model)
        self.manifold = manifold
        self.check_points = check_points

    # ---------------------------------------------------------------- hooks of the integrator
    def _check_input(self, x: Tensor, name: str) -> None:
        super()._check_input(x, name)
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

    def _project(self, proju: bool):
        return self.manifold.proju if proju else None

    def _divergence_hooks(self, proju: bool):
        # div_g u = tr(P_x du/dx) + <grad log rho, u>: the Euclidean-orthogonal tangent projection
        # of the cotangents (whatever ``proju`` says) and the volume term of the manifold's metric
        # in its coordinates (fm_riemann.manifolds._volume).
        volume = volume_of(self.manifold)
        return volume.project, volume.correction

    def _move(self, options: dict):
        return manifold_move(_unscaled(self.manifold), options["step_by"], options["projx"])

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
        *,
        step_by: StepBy = "projx",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        checkpoint_steps: bool = False,
        gradient: str | None = None,
        return_log_prob: bool = False,
        log_p0: Callable[[Tensor], Tensor] | None = None,
        divergence: str | Divergence = "exact",
        num_probes: int = 1,
        probe: str = "rademacher",
        generator: torch.Generator | None = None,
        divergence_chunk_size: int | None = None,
        **model_extras: Any,
    ) -> Tensor | tuple[Tensor, Tensor]:
        r"""Solve the ODE from ``x_init`` at ``time_grid[0]`` to ``time_grid[-1]``.

        Args:
            x_init: points on the manifold, shape ``[B, *point_shape]``.
            step_size: largest step; ``None`` steps exactly on ``time_grid``.
            projx: project the state onto the manifold after each move (``step_by="projx"``).
            proju: project the velocity onto the tangent space at each evaluation.
            method: ``"euler"``, ``"midpoint"``, ``"heun2"``, ``"rk4"`` or ``"dopri5"``.
            time_grid: 1-D strictly monotone times in $[0, 1]$, either direction, default
                ``[0, 1]``; integration starts at its first time and every time is hit exactly.
            return_intermediates: return the states at every time of ``time_grid``.
            verbose: show a progress bar (needs tqdm).
            enable_grad: keep the autograd graph through the solve.
            step_by: ``"projx"`` or ``"expmap"`` (see the class docstring).
            atol: absolute tolerance of ``dopri5``.
            rtol: relative tolerance of ``dopri5``.
            checkpoint_steps: checkpoint every step (as ``ODESolver.sample``).
            gradient: ``"backprop"``, ``"checkpoint"`` or ``"adjoint"`` (as ``ODESolver.sample``;
                the adjoint runs through the projected steps).
            return_log_prob: also return $\log p_1$ of the samples (w.r.t. the Riemannian
                volume), integrating the divergence along the same solve; needs ``log_p0``.
            log_p0: source log-density, ``[B, *point_shape] -> [B]``.
            divergence: ``"exact"`` (default here), ``"hutchinson"`` or a ``Divergence``.
            num_probes: Hutchinson probes.
            probe: ``"rademacher"`` or ``"gaussian"``.
            generator: ``torch.Generator`` for the probes.
            divergence_chunk_size: as in ``ODESolver.compute_likelihood``.
            **model_extras: forwarded to the velocity model.

        Returns:
            The final state ``[B, *point_shape]``, or ``[len(time_grid), B, *point_shape]`` with
            ``return_intermediates``; with ``return_log_prob`` the pair ``(samples, log_p1)``.
        """
        grad = self._gradient(gradient, checkpoint_steps)
        options = {"step_by": step_by, "projx": projx}
        if return_log_prob:
            if log_p0 is None:
                raise ValueError("return_log_prob=True needs log_p0, the source log-density")
            volume_of(self.manifold)  # TypeError before any work if it has no volume here
            return self._sample_with_likelihood(
                x_init, log_p0, return_intermediates, enable_grad, step_size=step_size,
                method=method, atol=atol, rtol=rtol, time_grid=time_grid, gradient=grad,
                verbose=verbose, divergence=divergence, num_probes=num_probes, probe=probe,
                generator=generator, divergence_chunk_size=divergence_chunk_size, proju=proju,
                move_options=options, model_extras=model_extras,
            )  # fmt: skip
        return self._sample(
            x_init, step_size=step_size, method=method, atol=atol, rtol=rtol,
            time_grid=time_grid, return_intermediates=return_intermediates,
            enable_grad=enable_grad, gradient=grad, verbose=verbose, proju=proju,
            move_options=options, model_extras=model_extras,
        )  # fmt: skip

    def compute_likelihood(
        self,
        x_1: Tensor,
        log_p0: Callable[[Tensor], Tensor],
        step_size: float | None,
        method: str = "euler",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        time_grid: Tensor | None = None,
        return_intermediates: bool = False,
        exact_divergence: bool = False,
        enable_grad: bool = False,
        *,
        projx: bool = True,
        proju: bool = True,
        step_by: StepBy = "projx",
        divergence: str | Divergence | None = None,
        num_probes: int = 1,
        probe: str = "rademacher",
        generator: torch.Generator | None = None,
        divergence_chunk_size: int | None = None,
        checkpoint_steps: bool = False,
        gradient: str | None = None,
        verbose: bool = False,
        **model_extras: Any,
    ) -> tuple[Tensor, Tensor]:
        r"""Log-likelihood $\log p_1(x_1)$ of the flow, by integrating backwards to the source.

        Along the flow $\frac{d}{dt}\log p_t(x_t) = -\mathrm{div}_M u_t(x_t)$, so
        $\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \mathrm{div}_M u_t(x_t)\,dt$, with
        $\mathrm{div}_M u = \mathrm{tr}(P_x\,\partial u/\partial x) + \langle\nabla\log\rho, u
        \rangle$ in the coordinates of the points: $P_x$ the Euclidean-orthogonal projection onto
        the tangent space and $\rho$ the density of the Riemannian volume with respect to the
        Euclidean one ($\rho = 1$ on ``Sphere``, ``FlatTorus``, ``Euclidean``, ``SO3``; the conformal
        factor $\lambda_x^n$ on ``PoincareBall``/``Stereographic``; $\sqrt k/\|x\|$ on
        ``Lorentz``; $\det X^{-(m+1)/2}$ on ``SymmetricPositiveDefinite``; ``Scaled`` and
        ``ProductManifold`` of these too). Densities are with respect to the Riemannian volume
        (area on $S^2$: uniform is $1/4\pi$). Other manifolds raise ``TypeError``.

        Args:
            x_1: target points, shape ``[B, *point_shape]``.
            log_p0: source log-density, ``[B, *point_shape] -> [B]``.
            step_size: largest step, or ``None`` to step on ``time_grid``.
            method: as in ``sample``.
            atol: as in ``sample``.
            rtol: as in ``sample``.
            time_grid: monotone times, default ``[1, 0]``; ``x_1`` is at its first time and
                ``log_p0`` is the density at its last.
            return_intermediates: return the states at every time of ``time_grid``.
            exact_divergence: the reference's switch: ``True`` for ``divergence="exact"`` (the
                trace from one batched backward pass over the $D$ projected basis vectors),
                ``False`` (default) for ``"hutchinson"``.
            enable_grad: keep the graph (train through the likelihood).
            projx: as in ``sample``.
            proju: as in ``sample``.
            step_by: as in ``sample``.
            divergence: ``"exact"`` or ``"hutchinson"``, or a ``Divergence`` holding all the
                divergence settings; overrides ``exact_divergence``.
            num_probes: Hutchinson probes $z$ (drawn once per solve, projected to the tangent
                space at each evaluation).
            probe: ``"rademacher"`` (default) or ``"gaussian"``.
            generator: random generator for Hutchinson's probes.
            divergence_chunk_size: as in ``ODESolver.compute_likelihood``.
            checkpoint_steps: as in ``ODESolver.compute_likelihood``.
            gradient: as in ``sample``.
            verbose: show a progress bar.
            **model_extras: forwarded to the velocity model.

        Returns:
            ``(x_0, log_likelihood)``: the source points (``[B, *point_shape]``, or
            ``[len(time_grid), B, *point_shape]`` with ``return_intermediates``) and
            $\log p_1(x_1)$ of shape ``[B]``.
        """
        volume_of(self.manifold)  # TypeError before any work if it has no volume here
        return self._likelihood(
            x_1, log_p0, return_intermediates, enable_grad, step_size=step_size, method=method,
            atol=atol, rtol=rtol, time_grid=time_grid,
            gradient=self._gradient(gradient, checkpoint_steps), verbose=verbose,
            divergence=divergence_name(divergence, exact_divergence), num_probes=num_probes,
            probe=probe, generator=generator, divergence_chunk_size=divergence_chunk_size,
            proju=proju, move_options={"step_by": step_by, "projx": projx},
            model_extras=model_extras,
        )  # fmt: skip

    def log_prob(
        self,
        x_1: Tensor,
        log_p0: Callable[[Tensor], Tensor],
        step_size: float | None,
        method: str = "euler",
        **kwargs: Any,
    ) -> Tensor:
        r"""$\log p_1(x_1)$, shape ``[B]``: ``compute_likelihood(...)[1]`` (same arguments)."""
        return self.compute_likelihood(x_1, log_p0, step_size, method, **kwargs)[1]
