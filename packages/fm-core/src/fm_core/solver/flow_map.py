r"""``FlowMapSolver``: few-step sampling with a flow-map (average-velocity) model.

One model evaluation per interval of the time grid: $x_{t_{i+1}} = x_{t_i} + (t_{i+1} - t_i)\,
u_\theta(x_{t_i}, t_i, t_{i+1})$. With the exact average velocity every grid gives the exact flow
map; a learned one is usually best at 1-4 steps. See ``fm_core.loss.flow_map`` for the model and
the sign convention.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fm_core.loss.flow_map import check_flow_map_model
from fm_core.solver.solver import Solver
from fm_core.solver.time_grid import fixed_step_grid, resolve_time_grid
from fm_core.utils.checks import check_batch_size, check_finite, check_floating

__all__ = ["FlowMapSolver"]


class FlowMapSolver(Solver):
    r"""Jump along a time grid with a flow-map model $u_\theta(x, t, r)$, one evaluation per jump.

    The model is called ``model(x=x, t=t, r=r, **model_extras)`` with ``x`` of shape ``[B, ...]``
    and ``t``, ``r`` **0-dim tensors** (the jump's start and end times, $t < r$; broadcast them
    inside the model), as ``ODESolver`` calls a velocity model. After each call ``last_nfe`` holds
    the number of model evaluations (the number of jumps).

    Args:
        model: a flow-map model taking ``x``, ``t`` and ``r`` by keyword.

    Example:
        >>> model = lambda x, t, r: torch.ones_like(x)  # constant velocity 1
        >>> solver = FlowMapSolver(model)
        >>> solver.sample(torch.zeros(2, 3)).tolist(), solver.last_nfe
        ([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], 1)
    """

    def __init__(self, model: Callable[..., Tensor]) -> None:
        super().__init__()
        check_flow_map_model(model)
        self.model = model
        self.last_nfe = 0

    def sample(
        self,
        x_init: Tensor,
        step_size: float | None = None,
        time_grid: Tensor | Sequence[float] | None = None,
        return_intermediates: bool = False,
        enable_grad: bool = False,
        **model_extras,
    ) -> Tensor:
        r"""Jump from ``x_init`` at ``time_grid[0]`` to ``time_grid[-1]``.

        Args:
            x_init: initial states (e.g. noise at $t = 0$), floating, shape ``[B, ...]``.
            step_size: largest jump: each interval of ``time_grid`` is cut into equal jumps no
                larger than it. ``None`` (default): the grid's own intervals.
            time_grid: strictly increasing times in $[0, 1]$, shape ``[T]`` (default ``[0, 1]``:
                one jump). ``torch.linspace(0, 1, n + 1)`` takes ``n`` jumps.
            return_intermediates: return the states at every time of ``time_grid``.
            enable_grad: record the autograd graph.
            **model_extras: forwarded to the model (labels, guidance scale, ...).

        Returns:
            The end state ``[B, ...]``, or the states at the grid times ``[T, B, ...]``.

        Raises:
            ValueError: an empty batch, a grid that is not increasing in $[0, 1]$, a model output
                of the wrong shape (at the first jump), or (eager CPU) a non-finite result.
        """
        check_floating(x_init, "x_init")
        check_batch_size(x_init, "x_init")
        tdtype = torch.float64 if x_init.dtype == torch.float64 else torch.float32
        grid = resolve_time_grid(time_grid, (0.0, 1.0), device=x_init.device, dtype=tdtype)
        if grid.numel() >= 2 and not torch.compiler.is_compiling():
            first, last = grid[[0, -1]].tolist()  # one read of the grid, before any work
            if not last > first:
                raise ValueError(
                    f"time_grid must increase (jumps go from noise at 0 towards data at 1), got "
                    f"ends {first} -> {last}"
                )
        grid, index = fixed_step_grid(grid, step_size)
        x = x_init
        states = [x]
        nfe = 0
        with torch.set_grad_enabled(enable_grad):
            for i in range(grid.numel() - 1):
                t, r = grid[i], grid[i + 1]
                u = self.model(x=x, t=t, r=r, **model_extras)
                if nfe == 0 and u.shape != x.shape:
                    raise ValueError(
                        f"model must return a tensor of x's shape {tuple(x.shape)}, got "
                        f"{tuple(u.shape)}"
                    )
                nfe += 1
                x = x + (r - t).to(x.dtype) * u
                states.append(x)
        self.last_nfe = nfe
        check_finite(x, "the sample", hint="the flow-map model returned NaN or inf")
        if return_intermediates:
            return torch.stack([states[i] for i in index])
        return x
