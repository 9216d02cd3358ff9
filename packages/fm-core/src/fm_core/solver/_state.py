"""Arithmetic on solver states: a state is a tuple of tensors (``(x,)`` or ``(x, log_det)``).

Tuples let one integrator carry the sample and its log-determinant without packing them into one
tensor; each helper is one fused op per component (``addcmul``), with no host synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor

State = tuple[Tensor, ...]

__all__ = ["State", "axpy", "lincomb"]


def axpy(y: State, a: Tensor, k: State) -> State:
    """Return ``y + a * k`` componentwise; ``a`` a 0-dim tensor (one kernel per component)."""
    return tuple(torch.addcmul(yi, a, ki) for yi, ki in zip(y, k, strict=True))


def lincomb(y: State, terms: list[tuple[float, State]]) -> State:
    """Return ``y + sum_j c_j k_j`` with Python-float coefficients (zero coefficients skipped)."""
    out = list(y)
    for c, k in terms:
        if c != 0.0:
            out = [torch.add(o, ki, alpha=c) for o, ki in zip(out, k, strict=True)]
    return tuple(out)
