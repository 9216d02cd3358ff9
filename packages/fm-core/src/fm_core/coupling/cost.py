"""Pairwise transport costs between two minibatches."""

from __future__ import annotations

import torch
from torch import Tensor

from fm_core.utils.checks import check_floating

__all__ = ["squared_euclidean_cost"]


def squared_euclidean_cost(x_0: Tensor, x_1: Tensor) -> Tensor:
    r"""$C_{ij} = \lVert x_0^{(i)} - x_1^{(j)} \rVert^2$ on samples flattened to vectors.

    Computed as $\lVert a\rVert^2 + \lVert b\rVert^2 - 2\langle a, b\rangle$ (one matrix product,
    as ``torch.cdist`` does for large batches), in the inputs' dtype promoted to at least
    float32, and clamped at 0 against rounding.

    Args:
        x_0: shape ``[N, ...]``.
        x_1: shape ``[M, ...]`` with the same per-sample shape.

    Returns:
        The cost matrix, shape ``[N, M]``.

    Example:
        >>> squared_euclidean_cost(torch.zeros(2, 3), torch.ones(4, 3)).shape
        torch.Size([2, 4])
    """
    check_floating(x_0, "x_0")
    check_floating(x_1, "x_1")
    if x_0.ndim == 0 or x_1.ndim == 0 or x_0.shape[1:] != x_1.shape[1:]:
        raise ValueError(
            f"x_0 and x_1 must be batches [N, ...] and [M, ...] of one sample shape, got "
            f"{tuple(x_0.shape)} and {tuple(x_1.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(x_0.dtype, x_1.dtype), torch.float32)
    a = x_0.reshape(x_0.shape[0], -1).to(dtype)
    b = x_1.reshape(x_1.shape[0], -1).to(dtype)
    cost = a.square().sum(1)[:, None] + b.square().sum(1)[None, :] - 2.0 * (a @ b.T)
    return cost.clamp_min_(0.0)
