"""RiemannianFlowMatchingLoss: the squared norm in the metric, per ambient coordinate."""

from __future__ import annotations

import pytest
import torch

from fm_core import AffineProbPath, FlowMatchingLoss
from fm_core.path.scheduler import CondOTScheduler
from fm_riemann import (
    Euclidean,
    GeodesicProbPath,
    PoincareBall,
    RiemannianFlowMatchingLoss,
    Sphere,
)
from fm_riemann.testing import random_points


def test_loss_is_the_metric_squared_norm(manifold):
    path = GeodesicProbPath(CondOTScheduler(), manifold)
    s = path.sample(
        random_points(manifold, 8), random_points(manifold, 8), torch.rand(8, dtype=torch.float64)
    )
    v = manifold.proju(s.x_t, torch.randn_like(s.x_t))
    per = RiemannianFlowMatchingLoss(path, reduction="none")(v, s)
    d = s.x_t[0].numel()
    squared_norm = manifold.inner(s.x_t, v - s.dx_t).reshape(8, -1).sum(1)
    torch.testing.assert_close(per, squared_norm / d)
    assert RiemannianFlowMatchingLoss(path)(s.dx_t, s).abs() < 1e-12
    # One rule for every fm-* loss: "mean" and "sum" reduce the [B] values of "none".
    torch.testing.assert_close(RiemannianFlowMatchingLoss(path, reduction="sum")(v, s), per.sum())
    torch.testing.assert_close(RiemannianFlowMatchingLoss(path)(v, s), per.mean())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_euclidean_loss_equals_fm_core_loss(reduction):
    """Before: the Riemannian loss summed over coordinates, fm-core's averaged (D = 5 times apart)."""
    g = torch.Generator().manual_seed(0)
    x_0, x_1, v = torch.randn(3, 6, 5, generator=g, dtype=torch.float64)
    t = torch.rand(6, generator=g, dtype=torch.float64)
    s = GeodesicProbPath(CondOTScheduler(), Euclidean()).sample(x_0, x_1, t)
    ours = RiemannianFlowMatchingLoss(GeodesicProbPath(CondOTScheduler(), Euclidean()), reduction)
    fm = FlowMatchingLoss(AffineProbPath(CondOTScheduler()), reduction=reduction)
    torch.testing.assert_close(ours(v, s), fm(v, x_0, x_1, t))


def test_poincare_loss_uses_the_conformal_factor():
    m = PoincareBall()
    path = GeodesicProbPath(CondOTScheduler(), m)
    x = torch.tensor([[0.5, 0.0]])
    s = path.sample(x, x, torch.zeros(1))
    v = torch.tensor([[1.0, 0.0]])
    lam = 2 / (1 - 0.25)
    # lambda^2 |v|^2 over D = 2 coordinates
    torch.testing.assert_close(RiemannianFlowMatchingLoss(path)(v, s), torch.tensor(lam**2 / 2))


def test_loss_bad_inputs():
    path = GeodesicProbPath(CondOTScheduler(), Sphere())
    s = path.sample(Sphere().random_uniform(4, 3), Sphere().random_uniform(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match=r"velocity must have the shape of path_sample\.dx_t"):
        RiemannianFlowMatchingLoss(path)(torch.zeros(4, 2), s)
    with pytest.raises(ValueError, match="reduction must be"):
        RiemannianFlowMatchingLoss(path, reduction="max")
    with pytest.raises(TypeError, match="path must be a GeodesicProbPath"):
        RiemannianFlowMatchingLoss(object())
