"""What a probability path returns when sampled."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["PathSample"]


@dataclass
class PathSample:
    r"""A sample $x_t$ of a conditional path and its conditional velocity.

    Attributes:
        x_1: target samples, shape ``[B, ...]``.
        x_0: source samples, shape ``[B, ...]``.
        t: times, shape ``[B]``.
        x_t: $x_t \sim p_t(\cdot \mid x_0, x_1)$, shape ``[B, ...]``.
        dx_t: the conditional velocity $\frac{d}{dt} x_t$, shape ``[B, ...]``.
    """

    x_1: Tensor
    x_0: Tensor
    t: Tensor
    x_t: Tensor
    dx_t: Tensor
