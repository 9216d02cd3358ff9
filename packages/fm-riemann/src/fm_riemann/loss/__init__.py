"""Losses on manifolds."""

from fm_riemann.loss.riemannian import RiemannianFlowMatchingLoss

__all__ = ["RiemannianFlowMatchingLoss"]
