"""RiemannianFlowMatchingLoss: the squared norm in the metric."""

from __future__ import annotations

import pytest
import torch

from fm_core.path.scheduler import CondOTScheduler
from fm_riemann import GeodesicProbPath, PoincareBall, RiemannianFlowMatchingLoss, Sphere
from fm_riemann.testing import random_points


def test_loss_is_the_metric_squared_norm(manifold):
    path = GeodesicProbPath(CondOTScheduler(), manifold)
    s = path.sample(
        random_points(manifold, 8), random_points(manifold, 8), torch.rand(8, dtype=torch.float64)
    )
    v = manifold.proju(s.x_t, torch.randn_like(s.x_t))
    per = RiemannianFlowMatchingLoss(path, reduction="none")(v, s)
    torch.testing.assert_close(per, manifold.inner(s.x_t, v - s.dx_t).reshape(8, -1).sum(1))
    assert RiemannianFlowMatchingLoss(path)(s.dx_t, s).abs() < 1e-12
    torch.testing.assert_close(RiemannianFlowMatchingLoss(path, reduction="sum")(v, s), per.sum())


def test_poincare_loss_uses_the_conformal_factor():
    m = PoincareBall()
    path = GeodesicProbPath(CondOTScheduler(), m)
    x = torch.tensor([[0.5, 0.0]])
    s = path.sample(x, x, torch.zeros(1))
    v = torch.tensor([[1.0, 0.0]])
    lam = 2 / (1 - 0.25)
    torch.testing.assert_close(RiemannianFlowMatchingLoss(path)(v, s), torch.tensor(lam**2))


def test_loss_bad_inputs():
    path = GeodesicProbPath(CondOTScheduler(), Sphere())
    s = path.sample(Sphere().random_uniform(4, 3), Sphere().random_uniform(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match=r"velocity must have the shape of path_sample\.dx_t"):
        RiemannianFlowMatchingLoss(path)(torch.zeros(4, 2), s)
    with pytest.raises(ValueError, match="reduction must be"):
        RiemannianFlowMatchingLoss(path, reduction="max")
    with pytest.raises(TypeError, match="path must be a GeodesicProbPath"):
        RiemannianFlowMatchingLoss(object())
