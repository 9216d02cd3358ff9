"""The one integration loop of every ODE solver (Euclidean and Riemannian), and the model call.

``integrate`` runs a method from the registry over a time grid and returns the state at every
time of the grid. The state moves by a pluggable ``move`` (``y + w`` in Euclidean space,
``projx``/``expmap`` on a manifold: ``fm_core.solver._moves``), so one set of Butcher tableaux
serves both. Gradients through the solve come three ways (``gradient=``):

- ``"backprop"``: autograd records every step (activation memory grows with the steps);
- ``"checkpoint"``: each step runs under ``torch.utils.checkpoint`` (non-reentrant): backward keeps
  each step's input state and recomputes its model evaluations;
- ``"adjoint"``: the discrete adjoint (``fm_core.solver._adjoint``): the forward solve records no
  graph, the backward pass walks the steps in reverse with one vector-Jacobian product per step.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint, set_checkpoint_early_stop

from fm_core.solver._moves import Move, euclidean_move
from fm_core.solver._progress import step_progress
from fm_core.solver._registry import TorchdiffeqMethod
from fm_core.solver._state import State
from fm_core.solver.dopri5 import Dopri5
from fm_core.solver.fixed_step import FixedStepMethod
from fm_core.solver.time_grid import fixed_step_grid
from fm_core.utils.checks import check_finite

__all__ = ["GRADIENTS", "ModelCall", "check_finite_solution", "integrate", "time_dtype"]

#: How gradients flow through a solve (``gradient=`` of the solvers).
GRADIENTS = ("backprop", "checkpoint", "adjoint")


def time_dtype(x: Tensor) -> torch.dtype:
    """The dtype of the time grid for states of ``x``'s dtype: float64 for float64, else float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def check_finite_solution(x: Tensor, name: str = "the sample") -> None:
    """The end state of a solve is finite, or a ``ValueError`` blaming the velocity model.

    Once per solve, at the end (NaN/inf from the model propagate to the end state): a value
    check, so eager CPU by default, never a sync inside the loop or a compiled graph break.
    """
    check_finite(
        x,
        name,
        hint="the velocity model returned NaN or inf during the solve (see "
        "docs/fm-core/validation.md; value_checks('off') returns such results unchecked)",
    )


class ModelCall:
    """Call ``model(x=x, t=t, **extras)``, count the calls, check the first output, project it.

    The one model-call wrapper of the ODE solvers (Euclidean and Riemannian). The checks run on
    the first evaluation, before any state is updated, so a model that returns the wrong type,
    shape or device fails before a step is taken; they read only metadata (no host sync).

    Args:
        model: the velocity model.
        extras: keyword arguments forwarded to every call.
        name: the model's name in error messages.
        project: optional ``project(x, v)`` applied to every output (a manifold's ``proju``).
    """

    def __init__(
        self,
        model: Callable,
        extras: dict,
        name: str = "velocity_model",
        project: Callable[[Tensor, Tensor], Tensor] | None = None,
    ):
        self.model, self.extras, self.name, self.project = model, extras, name, project
        self.nfe = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.model(x=x, t=t, **self.extras)
        if self.nfe == 0:
            self._check_first(out, x)
        self.nfe += 1
        return out if self.project is None else self.project(x, out)

    def _check_first(self, out: object, x: Tensor) -> None:
        if not isinstance(out, Tensor):
            raise TypeError(
                f"{self.name} must return a Tensor of the shape of x {tuple(x.shape)}, got "
                f"{type(out).__name__}"
            )
        if out.shape != x.shape:
            raise ValueError(
                f"{self.name} must return a tensor of the shape of x {tuple(x.shape)}, got "
                f"{tuple(out.shape)}"
            )
        if out.device != x.device:
            raise ValueError(
                f"{self.name} returned a tensor on {out.device} for x on {x.device}; move the "
                "model (or its buffers) to the device of x_init"
            )


def integrate(
    f: Callable[[Tensor, State], State],
    y0: State,
    time_grid: Tensor,
    method: FixedStepMethod | Dopri5 | TorchdiffeqMethod,
    *,
    step_size: float | None,
    atol: float,
    rtol: float,
    gradient: str = "backprop",
    move: Move = euclidean_move,
    verbose: bool = False,
    adjoint_params: tuple[Tensor, ...] = (),
) -> list[State]:
    """Integrate $dy/dt = f(t, y)$ from ``y0`` over ``time_grid``; the state at each grid time.

    Args:
        f: dynamics, called with a 0-dim time tensor and a state tuple.
        y0: initial state, a tuple of tensors.
        time_grid: validated grid, shape ``[T]``, on the state's device.
        method: an object from ``get_method``.
        step_size: the largest step for fixed-step methods (``None``: the grid's own steps).
        atol: absolute tolerance (adaptive methods).
        rtol: relative tolerance (adaptive methods).
        gradient: ``"backprop"``, ``"checkpoint"`` or ``"adjoint"`` (see the module docstring);
            only read when autograd is on.
        move: how a state advances (``fm_core.solver._moves``).
        verbose: a progress bar over the steps (tqdm, if installed).
        adjoint_params: with ``gradient="adjoint"``, the tensors ``f`` closes over that need
            gradients (the model's parameters and tensor extras).

    Returns:
        ``T`` states; the first is ``y0``.
    """
    if isinstance(method, Dopri5):
        if gradient == "adjoint":
            raise ValueError(
                "gradient='adjoint' needs a fixed-step method (euler, midpoint, heun2, rk4); "
                "dopri5 takes gradient='backprop' or 'checkpoint'"
            )
        knots = time_grid.detach().double().cpu().tolist()
        return method.integrate(
            f, y0, knots, atol=atol, rtol=rtol, use_checkpoint=gradient == "checkpoint", move=move
        )
    if isinstance(method, TorchdiffeqMethod):
        if move is not euclidean_move or gradient != "backprop":
            raise ValueError(
                f"method={method.name!r} (torchdiffeq) runs in Euclidean space with "
                "gradient='backprop' only; use one of fm_core's methods"
            )
        return _torchdiffeq(f, y0, time_grid, method, step_size, atol, rtol)
    grid, index = fixed_step_grid(time_grid, step_size)
    coefficients = method.coefficients(grid[:-1], grid.diff())
    if gradient == "adjoint" and torch.is_grad_enabled():
        from fm_core.solver._adjoint import adjoint_solve

        return adjoint_solve(f, y0, method, coefficients, index, move, adjoint_params, verbose)
    use_checkpoint = gradient == "checkpoint" and torch.is_grad_enabled()
    keep = set(index[1:])
    out = [y0]
    y = y0
    bar = step_progress(len(coefficients), enabled=verbose)
    for i, c in enumerate(coefficients):
        if use_checkpoint:
            y = checkpointed_step(method.step, f, y, c, move)
        else:
            y = method.step(f, y, c, move)
        if i + 1 in keep:
            out.append(y)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return out


def checkpointed_step(step, *args):
    """``step(*args)`` under non-reentrant checkpointing, recomputed whole in backward.

    Early stopping of the recomputation is off: TorchScript functions in a model or a manifold
    (geoopt's PoincareBall, Lorentz and SPD maps) swallow the signal that stops it early and
    fail with an empty ``RuntimeError``; recomputing a whole step costs at most the step's tail.
    """
    with set_checkpoint_early_stop(False):
        return checkpoint(step, *args, use_reentrant=False)


def _torchdiffeq(f, y0, time_grid, method, step_size, atol, rtol) -> list[State]:
    try:
        odeint = importlib.import_module("torchdiffeq").odeint
    except ImportError as err:  # pragma: no cover - registry checks first
        raise ImportError(
            f"method={method.name!r} needs torchdiffeq: pip install torchdiffeq"
        ) from err
    options = {"step_size": step_size} if step_size is not None and not method.adaptive else {}
    sol = odeint(lambda t, y: f(t, y), y0, time_grid, method=method.name, options=options,
                 atol=atol, rtol=rtol)  # fmt: skip
    return [tuple(s[i] for s in sol) for i in range(time_grid.numel())]
