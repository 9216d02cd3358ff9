r"""``geodesic``: the curve $t \mapsto \exp_x(t \log_x y)$ between two points, for plotting."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["geodesic"]


def geodesic(manifold, start_point: Tensor, end_point: Tensor) -> Callable[[Tensor], Tensor]:
    r"""The geodesic from ``start_point`` ($t = 0$) to ``end_point`` ($t = 1$), as a function of $t$.

    Args:
        manifold: anything with ``expmap`` and ``logmap``; its ``ndim`` (default 1) says how
            many trailing dimensions make one point.
        start_point: points ``[..., *point_shape]``.
        end_point: points of the same shape.

    Returns:
        A function mapping times ``t`` of shape ``[T]`` to the points
        $\exp_x(t_i \log_x y)$, shape ``[..., T, *point_shape]`` (the reference's layout).

    Example:
        >>> from fm_riemann import Sphere
        >>> x = torch.tensor([1.0, 0.0, 0.0])
        >>> y = torch.tensor([0.0, 1.0, 0.0])
        >>> geodesic(Sphere(), x, y)(torch.tensor([0.0, 0.5, 1.0])).round(decimals=4).abs()
        tensor([[1.0000, 0.0000, 0.0000],
                [0.7071, 0.7071, 0.0000],
                [0.0000, 1.0000, 0.0000]])
    """
    ndim = int(getattr(manifold, "ndim", 1) or 1)
    shooting = manifold.logmap(start_point, end_point)
    start = start_point.unsqueeze(-ndim - 1)

    def path(t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=shooting.dtype, device=shooting.device).reshape(-1)
        steps = t.reshape(-1, *([1] * ndim)) * shooting.unsqueeze(-ndim - 1)
        return manifold.expmap(start, steps)

    return path
