"""Time grids shared by every solver: validation and refinement into fixed steps."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from fm_core.utils.checks import check_floating, value_checks_enabled

__all__ = ["check_time_grid", "fixed_step_grid", "resolve_time_grid"]


def resolve_time_grid(
    time_grid: Tensor | Sequence[float] | None,
    default: Sequence[float],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Return ``time_grid`` as a validated 1-D tensor on ``device``; ``default`` when it is ``None``.

    Solvers take ``time_grid=None`` rather than a tensor default (a tensor default argument is one
    object shared by every call). See ``check_time_grid`` for what a valid grid is.
    """
    if time_grid is None:
        time_grid = torch.tensor(list(default), dtype=dtype or torch.float32)
    elif not isinstance(time_grid, Tensor):
        time_grid = torch.tensor(list(time_grid), dtype=dtype or torch.float32)
    check_time_grid(time_grid)
    return time_grid.to(device=device, dtype=dtype or time_grid.dtype)


def check_time_grid(time_grid: Tensor, name: str = "time_grid") -> None:
    """Raise unless ``time_grid`` is a 1-D floating tensor of >= 2 strictly monotone times in [0, 1].

    A descending grid integrates backwards in time (``compute_likelihood`` runs from 1 to 0).
    The values are a configuration check: once per solve, before any step, in eager mode on any
    device (one host synchronisation for a device grid); skipped while ``torch.compile`` traces.
    """
    check_floating(time_grid, name)
    if time_grid.ndim != 1 or time_grid.numel() < 2:
        raise ValueError(
            f"{name} must be a 1-D tensor of at least 2 times, got shape {tuple(time_grid.shape)}"
        )
    if not value_checks_enabled():  # no tensor argument: any device, never while compiling
        return
    values = time_grid.detach().double().cpu()
    if not bool(((values >= 0) & (values <= 1)).all()):
        raise ValueError(f"{name} must lie in [0, 1], got {values.tolist()}")
    diffs = values.diff()
    if not (bool((diffs > 0).all()) or bool((diffs < 0).all())):
        raise ValueError(
            f"{name} must be strictly increasing or strictly decreasing, got {values.tolist()}"
        )


def fixed_step_grid(time_grid: Tensor, step_size: float | None) -> tuple[Tensor, list[int]]:
    """Refine ``time_grid`` so that no step exceeds ``step_size`` (by more than float rounding,
    1e-6 relative) and every grid time is hit exactly.

    Each interval ``[t_i, t_{i+1}]`` is cut into ``ceil(|t_{i+1} - t_i| / step_size)`` equal steps.
    An interval may exceed ``n * step_size`` by up to 1e-6 in time before it gets another step,
    so that knots rounded to float32 (``linspace(0, 1, 6)`` stores 0.2 as 0.2000000030, even
    after a cast to float64) do not add steps: with ``step_size=0.02`` that grid takes 50
    steps, not 53, and ``[0, 1]`` at 0.1 takes 10, not 11. With ``step_size=None`` the grid is
    used as given.

    Args:
        time_grid: validated 1-D grid (see ``check_time_grid``).
        step_size: the largest step, positive; or ``None``.

    Returns:
        ``(grid, index)``: the refined grid (same device and dtype) and, for each entry of
        ``time_grid``, its position in ``grid`` (for returning intermediates).
    """
    if step_size is None:
        return time_grid, list(range(time_grid.numel()))
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not step_size > 0:
        raise ValueError(f"step_size must be a positive number or None, got {step_size!r}")
    knots = time_grid.detach().double().cpu().tolist()
    # A float32 knot in [0, 1] is off by at most 6e-8 (half an ulp of 1), an interval by 1.2e-7;
    # 1e-6 of slack in time covers that with room, whatever dtype the grid was cast to since.
    pieces: list[Tensor] = []
    index = [0]
    for a, b in itertools.pairwise(knots):
        n = max(1, math.ceil((abs(b - a) - 1e-6) / step_size))
        pieces.append(torch.linspace(a, b, n + 1, dtype=torch.float64)[:-1])
        index.append(index[-1] + n)
    pieces.append(torch.tensor([knots[-1]], dtype=torch.float64))
    grid = torch.cat(pieces).to(device=time_grid.device, dtype=time_grid.dtype)
    return grid, index
