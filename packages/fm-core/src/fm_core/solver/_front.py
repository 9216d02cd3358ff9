r"""What ``ODESolver`` and ``RiemannianODESolver`` share: checks, solves, likelihoods, gradients.

A front-end differs only in how its state moves (``_move``), how it projects model outputs and
divergence cotangents (``_project``: a manifold's ``proju``) and how it checks its input points;
sampling, the log-determinant dynamics, ``return_log_prob``, the three gradient modes and the
progress hook are written here once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fm_core.solver._adjoint import adjoint_params
from fm_core.solver._moves import Move, euclidean_move
from fm_core.solver._registry import get_method
from fm_core.solver.divergence import ExactDivergence, HutchinsonDivergence, resolve_divergence
from fm_core.solver.integrate import (
    GRADIENTS,
    ModelCall,
    check_finite_solution,
    integrate,
    time_dtype,
)
from fm_core.solver.solver import Solver
from fm_core.solver.time_grid import resolve_time_grid
from fm_core.utils.checks import check_batch_size, check_floating, check_log_density

__all__ = ["FlowSolver"]


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


class FlowSolver(Solver):
    """Private base of the ODE solvers (not public API: subclass ``Solver`` instead)."""

    def __init__(self, velocity_model: Callable[..., Tensor]):
        super().__init__()
        if not callable(velocity_model):
            raise TypeError(f"velocity_model must be callable, got {type(velocity_model).__name__}")
        self.velocity_model = velocity_model
        self.last_nfe = 0

    # ------------------------------------------------------------------ hooks
    def _project(self, proju: bool) -> Callable[[Tensor, Tensor], Tensor] | None:
        return None

    def _move(self, options: dict) -> Move:
        return euclidean_move

    def _divergence_hooks(self, proju: bool):
        """``(project, correction)`` of the log-determinant dynamics.

        ``project(x, v)`` projects divergence cotangents (``None``: none); ``correction(x, u)``,
        if not ``None``, is added to the divergence (a volume term: the rate of change of the
        log-density of the reference measure along the flow, on manifolds given in coordinates).
        """
        return self._project(proju), None

    def _check_input(self, x: Tensor, name: str) -> None:
        check_floating(x, name)
        check_batch_size(x, name)

    # ------------------------------------------------------------------ checks
    def _prepare(self, x, step_size, method, atol, rtol, time_grid, default, name, gradient):
        self._check_input(x, name)
        m = get_method(method)
        grid = resolve_time_grid(time_grid, default, device=x.device, dtype=time_dtype(x))
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {list(GRADIENTS)}, got {gradient!r}")
        if m.adaptive:
            if step_size is not None:
                raise ValueError(
                    f"step_size must be None for the adaptive method {method!r} (it picks its "
                    f"own steps from atol/rtol), got {step_size!r}"
                )
            _positive("atol", atol)
            _positive("rtol", rtol)
        elif step_size is None and time_grid is None:
            raise ValueError(
                f"step_size is required for the fixed-step method {method!r} (e.g. "
                "step_size=0.05), unless time_grid gives the steps"
            )
        elif step_size is not None:
            _positive("step_size", step_size)
        return m, grid

    @staticmethod
    def _gradient(gradient: str | None, checkpoint_steps: bool) -> str:
        if gradient is None:
            return "checkpoint" if checkpoint_steps else "backprop"
        return gradient

    # ------------------------------------------------------------------ solves
    def _sample(self, x_init, *, step_size, method, atol, rtol, time_grid, return_intermediates,
                enable_grad, gradient, verbose, proju, move_options, model_extras):  # fmt: skip
        m, grid = self._prepare(
            x_init, step_size, method, atol, rtol, time_grid, (0.0, 1.0), "x_init", gradient
        )
        call = ModelCall(self.velocity_model, model_extras, project=self._project(proju))
        move = self._move(move_options)
        with torch.set_grad_enabled(enable_grad):
            states = integrate(
                lambda t, y: (call(y[0], t),), (x_init,), grid, m, step_size=step_size,
                atol=atol, rtol=rtol, gradient=gradient, move=move, verbose=verbose,
                adjoint_params=adjoint_params(self.velocity_model, model_extras),
            )  # fmt: skip
        self.last_nfe = call.nfe
        check_finite_solution(states[-1][0], "the sample")
        if return_intermediates:
            return torch.stack([s[0] for s in states])
        return states[-1][0]

    def _log_det_dynamics(
        self, call, x, divergence, num_probes, probe, generator, chunk, project, correction=None
    ):
        if divergence == "exact":
            estimator = ExactDivergence(x, chunk, project=project)
        elif divergence == "hutchinson":
            estimator = HutchinsonDivergence(x, num_probes, probe, generator, project=project)
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
                if correction is not None:
                    div = div + correction(x_t, u)
            if not graph:
                u, div = u.detach(), div.detach()
            return u, div.to(y[1].dtype)

        return dynamics

    def _solve_with_log_det(
        self, x, log_p0, ends, name, *, step_size, method, atol, rtol, time_grid, enable_grad,
        gradient, verbose, divergence, num_probes, probe, generator, divergence_chunk_size,
        proju, move_options, model_extras,
    ):  # fmt: skip
        """Integrate ``(x, int div u dt)`` over a grid running from ``ends[0]`` to ``ends[1]``."""
        m, grid = self._prepare(x, step_size, method, atol, rtol, time_grid, ends, name, gradient)
        got = grid[[0, -1]].tolist()
        if got != list(ends):
            raise ValueError(
                f"time_grid must start at {ends[0]} and end at {ends[1]}, got ends {got}"
            )
        if not callable(log_p0):
            raise TypeError(f"log_p0 must be callable, got {type(log_p0).__name__}")
        divergence, num_probes, probe, divergence_chunk_size = resolve_divergence(
            divergence, num_probes, probe, divergence_chunk_size
        )
        call = ModelCall(self.velocity_model, model_extras, project=self._project(proju))
        project, correction = self._divergence_hooks(proju)
        dyn = self._log_det_dynamics(call, x, divergence, num_probes, probe, generator,
                                     divergence_chunk_size, project, correction)  # fmt: skip
        log_det0 = torch.zeros(x.shape[0], device=x.device, dtype=time_dtype(x))
        with torch.set_grad_enabled(enable_grad):
            states = integrate(
                dyn, (x, log_det0), grid, m, step_size=step_size, atol=atol, rtol=rtol,
                gradient=gradient, move=self._move(move_options), verbose=verbose,
                adjoint_params=adjoint_params(self.velocity_model, model_extras),
            )  # fmt: skip
        self.last_nfe = call.nfe
        return states

    def _likelihood(self, x_1, log_p0, intermediates, enable_grad, **kw):
        states = self._solve_with_log_det(
            x_1, log_p0, (1.0, 0.0), "x_1", enable_grad=enable_grad, **kw
        )
        x_0, integral = states[-1]
        with torch.set_grad_enabled(enable_grad):
            log_source = check_log_density(log_p0(x_0), x_1.shape[0])
            log_p1 = log_source + integral  # integral = int_1^0 div dt = -int_0^1 div dt
        check_finite_solution(x_0, "the source point x_0")
        check_finite_solution(log_p1, "log_p1")
        if intermediates:
            return torch.stack([s[0] for s in states]), log_p1
        return x_0, log_p1

    def _sample_with_likelihood(self, x_init, log_p0, intermediates, enable_grad, **kw):
        states = self._solve_with_log_det(
            x_init, log_p0, (0.0, 1.0), "x_init", enable_grad=enable_grad, **kw
        )
        with torch.set_grad_enabled(enable_grad):
            log_p_init = check_log_density(log_p0(x_init), x_init.shape[0])
        x_1, integral = states[-1]
        log_p1 = log_p_init - integral
        check_finite_solution(x_1, "the sample")
        check_finite_solution(log_p1, "log_p1")
        if intermediates:
            return torch.stack([s[0] for s in states]), log_p1
        return x_1, log_p1


def divergence_name(divergence: str | None, exact_divergence: bool) -> str:
    """``divergence`` if given, else the reference's switch: exact or Hutchinson."""
    if divergence is None:
        return "exact" if exact_divergence else "hutchinson"
    return divergence
