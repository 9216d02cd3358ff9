"""Learning-rate schedules used by the apps."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_schedule(
    optimizer: Optimizer, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> LambdaLR:
    r"""Linear warmup from 0 over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` × lr.

    The factor at step $s$ is $(s+1)/(w+1)$ during warmup (never 0, reaching 1 at $s = w$), then
    $r + (1-r)\,\tfrac12(1+\cos(\pi\,p))$ with $p = (s-w)/(T-w)$ clamped to $[0, 1]$.
    Past ``total_steps`` the factor stays at $r$, so a run extended by resuming keeps a valid rate.

    Args:
        optimizer: the optimiser whose learning rates are scaled.
        warmup_steps: number of warmup steps, ``>= 0``.
        total_steps: the step at which the decay reaches ``min_lr_ratio``; ``>= warmup_steps``.
        min_lr_ratio: final factor in ``[0, 1]``.

    Returns:
        A ``LambdaLR``; call ``.step()`` after each optimiser step. Its ``state_dict`` holds no
        function, so it saves and loads with ``weights_only=True``.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = warmup_cosine_schedule(opt, warmup_steps=2, total_steps=4)
        >>> lrs = []
        >>> for _ in range(5):
        ...     lrs.append(round(sched.get_last_lr()[0], 3))
        ...     opt.step()
        ...     sched.step()
        >>> lrs
        [0.333, 0.667, 1.0, 0.5, 0.0]
    """
    for name, value in (("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if total_steps < warmup_steps:
        raise ValueError(f"total_steps ({total_steps}) must be >= warmup_steps ({warmup_steps})")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1) if warmup_steps else 1.0
        span = max(total_steps - warmup_steps, 1)
        progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
