"""What a discrete probability path returns when sampled."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["DiscretePathSample"]


@dataclass
class DiscretePathSample:
    r"""A sample $x_t \sim p_t(\cdot \mid x_0, x_1)$ of a discrete path (no velocity field: it is a CTMC).

    Attributes:
        x_1: target tokens, long, shape ``[B, ...]``.
        x_0: source tokens, long, shape ``[B, ...]``.
        t: times, shape ``[B]``.
        x_t: tokens at time $t$, long, shape ``[B, ...]``.
    """

    x_1: Tensor
    x_0: Tensor
    t: Tensor
    x_t: Tensor
