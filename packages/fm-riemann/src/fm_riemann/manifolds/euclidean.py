"""Euclidean space with one event dimension, as the reference's ``Euclidean``."""

from __future__ import annotations

import geoopt

__all__ = ["Euclidean"]


class Euclidean(geoopt.Euclidean):
    r"""$\mathbb{R}^D$ with the dot product over the last ``ndim`` dimensions (default 1).

    ``geoopt.Euclidean`` defaults to ``ndim=0`` (every scalar its own manifold, so ``inner``
    does not sum); this subclass defaults to ``ndim=1``, which is what a flow on vectors
    ``[B, D]`` wants (the reference's ``Euclidean`` also treats the last dimension as the point).
    $\exp_x(u) = x + u$, $\log_x(y) = y - x$.

    Args:
        ndim: number of trailing dimensions that make one point.

    Example:
        >>> import torch
        >>> Euclidean().inner(torch.zeros(2, 3), torch.ones(2, 3)).shape
        torch.Size([2])
    """

    def __init__(self, ndim: int = 1):
        super().__init__(ndim=ndim)
