"""The Riemannian flow-matching loss."""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from fm_core.ext import check_reduction, check_same_device, reduce_loss
from fm_core.path.path_sample import PathSample
from fm_riemann.path.geodesic import GeodesicProbPath

__all__ = ["RiemannianFlowMatchingLoss"]


class RiemannianFlowMatchingLoss(nn.Module):
    r"""$\frac1D \| v_\theta(x_t, t) - \dot x_t \|^2_{g(x_t)}$: the squared error in the manifold's
    metric, per coordinate.

    Per sample, ``manifold.inner(x_t, v - dx_t)`` (summed over any extra non-batch dimensions,
    e.g. a set of points per sample) divided by $D$, the number of ambient coordinates of a
    sample (the product of ``v.shape[1:]``). This is fm-core's ``FlowMatchingLoss`` rule, the mean over
    coordinates: on ``Euclidean`` the two losses are equal, and on the sphere or torus the
    default equals the reference notebooks' ``(v - dx_t).pow(2).mean()``. On the Poincaré ball
    the metric weights by the conformal factor, as the geometry asks. Multiply by $D$ for the
    squared norm itself.

    Args:
        path: the ``GeodesicProbPath`` that produced the samples (its manifold gives the metric).
        reduction: ``"none"`` returns the ``[B]`` per-sample values, ``"mean"`` (default) their
            mean, ``"sum"`` their sum (the one rule of every fm-* loss).

    Example:
        >>> import torch
        >>> from fm_riemann import GeodesicProbPath, Sphere
        >>> from fm_core.path.scheduler import CondOTScheduler
        >>> path = GeodesicProbPath(CondOTScheduler(), Sphere())
        >>> x_0, x_1 = Sphere().random_uniform(8, 3), Sphere().random_uniform(8, 3)
        >>> s = path.sample(x_0, x_1, torch.rand(8))
        >>> RiemannianFlowMatchingLoss(path)(s.dx_t, s)
        tensor(0.)
    """

    def __init__(self, path: GeodesicProbPath, reduction: Literal["mean", "sum", "none"] = "mean"):
        super().__init__()
        if not isinstance(path, GeodesicProbPath):
            raise TypeError(f"path must be a GeodesicProbPath, got {type(path).__name__}")
        self.path = path
        self.reduction = check_reduction(reduction)

    def forward(self, velocity: Tensor, path_sample: PathSample) -> Tensor:
        """Loss of predicted ``velocity`` (shape ``[B, *point_shape]``) against ``path_sample.dx_t``."""
        if not isinstance(velocity, Tensor) or velocity.shape != path_sample.dx_t.shape:
            got = tuple(velocity.shape) if isinstance(velocity, Tensor) else type(velocity).__name__
            raise ValueError(
                f"velocity must have the shape of path_sample.dx_t, "
                f"{tuple(path_sample.dx_t.shape)}, got {got}"
            )
        check_same_device([("path_sample.dx_t", path_sample.dx_t), ("velocity", velocity)])
        sq = self.path.manifold.inner(path_sample.x_t, velocity - path_sample.dx_t)
        per_sample = sq.reshape(sq.shape[0], -1).sum(1) / math.prod(velocity.shape[1:])
        return reduce_loss(per_sample, self.reduction)
