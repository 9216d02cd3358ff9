"""The integration loop shared by ``ODESolver`` and the stochastic sampler, and the model call.

``integrate`` runs a method from the registry over a time grid and returns the state at every
time of the grid. With ``use_checkpoint=True`` each step runs under
``torch.utils.checkpoint`` (non-reentrant): the backward pass keeps only each step's input
state and recomputes the step's model evaluations, so activation memory does not grow with the
number of steps (the stored states do, by one state per step).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from fm_core.solver._state import State
from fm_core.solver.dopri5 import Dopri5
from fm_core.solver.fixed_step import FixedStepMethod
from fm_core.solver.registry import TorchdiffeqMethod
from fm_core.solver.time_grid import fixed_step_grid
from fm_core.utils.checks import check_finite

__all__ = ["ModelCall", "integrate", "time_dtype"]


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
    """Call ``model(x=x, t=t, **extras)``, count the calls, and check the first output's shape.

    The shape check runs on the first evaluation, before any state is updated, so a model that
    returns the wrong shape fails before a step is taken. It reads only ``.shape`` (no host sync).
    """

    def __init__(self, model: Callable, extras: dict, name: str = "velocity_model"):
        self.model, self.extras, self.name = model, extras, name
        self.nfe = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.model(x=x, t=t, **self.extras)
        if self.nfe == 0:
            if not isinstance(out, Tensor):
                raise TypeError(
                    f"{self.name} must return a Tensor of the shape of x, got {type(out).__name__}"
                )
            if out.shape != x.shape:
                raise ValueError(
                    f"{self.name} output must have the shape of x {tuple(x.shape)}, got "
                    f"{tuple(out.shape)}"
                )
        self.nfe += 1
        return out


def integrate(
    f: Callable[[Tensor, State], State],
    y0: State,
    time_grid: Tensor,
    method: FixedStepMethod | Dopri5 | TorchdiffeqMethod,
    *,
    step_size: float | None,
    atol: float,
    rtol: float,
    use_checkpoint: bool = False,
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
        use_checkpoint: checkpoint each step (for gradients with bounded activation memory).

    Returns:
        ``T`` states; the first is ``y0``.
    """
    if isinstance(method, Dopri5):
        knots = time_grid.detach().double().cpu().tolist()
        return method.integrate(f, y0, knots, atol=atol, rtol=rtol, use_checkpoint=use_checkpoint)
    if isinstance(method, TorchdiffeqMethod):
        return _torchdiffeq(f, y0, time_grid, method, step_size, atol, rtol)
    grid, index = fixed_step_grid(time_grid, step_size)
    coefficients = method.coefficients(grid[:-1], grid.diff())
    keep = set(index[1:])
    out = [y0]
    y = y0
    for i, c in enumerate(coefficients):
        if use_checkpoint:
            y = checkpoint(method.step, f, y, c, use_reentrant=False)
        else:
            y = method.step(f, y, c)
        if i + 1 in keep:
            out.append(y)
    return out


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
