"""The Riemannian flow-matching loss."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from fm_core.path.path_sample import PathSample
from fm_core.utils.checks import check_same_device
from fm_riemann.path.geodesic import GeodesicProbPath

__all__ = ["RiemannianFlowMatchingLoss"]


class RiemannianFlowMatchingLoss(nn.Module):
    r"""$\| v_\theta(x_t, t) - \dot x_t \|^2_{g(x_t)}$, the squared error in the manifold's metric.

    Computed as ``manifold.inner(x_t, v - dx_t)`` (summed over any extra non-batch dimensions,
    e.g. a set of points per sample), then reduced over the batch. On the sphere, torus or
    ``Euclidean`` this is the ambient squared error summed over coordinates; on the Poincaré
    ball it weights by the conformal factor, as the geometry asks.

    Args:
        path: the ``GeodesicProbPath`` that produced the samples (its manifold gives the metric).
        reduction: ``"mean"`` (over the batch, default), ``"sum"`` or ``"none"`` (shape ``[B]``).

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
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.path = path
        self.reduction = reduction

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
        per_sample = sq.reshape(sq.shape[0], -1).sum(1) if sq.ndim > 1 else sq
        if self.reduction == "none":
            return per_sample
        return per_sample.sum() if self.reduction == "sum" else per_sample.mean()
