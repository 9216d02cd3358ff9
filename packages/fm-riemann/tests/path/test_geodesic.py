"""GeodesicProbPath: the shared path suite on several manifolds, closed form vs autodiff, errors."""

from __future__ import annotations

import geoopt
import pytest
import torch

from fm_core.path.scheduler import CondOTScheduler, PolynomialConvexScheduler, VPScheduler
from fm_core.testing import ContinuousProbPathTests
from fm_riemann import SO3, FlatTorus, GeodesicProbPath, Lorentz, PoincareBall, Sphere
from fm_riemann.testing import MANIFOLDS, random_points, se3_like, torus_x_sphere


class _GeodesicSuite(ContinuousProbPathTests):
    manifold_factory = staticmethod(Sphere)

    @pytest.fixture
    def path(self):
        return GeodesicProbPath(CondOTScheduler(), self.manifold_factory())

    def make_endpoints(self, batch_size, dtype):
        m = self.manifold_factory()
        return random_points(m, batch_size, dtype), random_points(m, batch_size, dtype)


class TestGeodesicOnSphere(_GeodesicSuite):
    manifold_factory = staticmethod(Sphere)


class TestGeodesicOnTorus(_GeodesicSuite):
    manifold_factory = staticmethod(FlatTorus)

    def assert_same_points(self, a, b):  # angles agree modulo 2π
        torch.testing.assert_close(torch.exp(1j * a), torch.exp(1j * b), rtol=1e-5, atol=1e-5)


class TestGeodesicOnSO3(_GeodesicSuite):
    manifold_factory = staticmethod(SO3)


class TestGeodesicOnSE3Like(_GeodesicSuite):
    manifold_factory = staticmethod(se3_like)


class TestGeodesicOnPoincareBall(_GeodesicSuite):
    manifold_factory = staticmethod(PoincareBall)


class TestGeodesicAutodiffOnSphere(_GeodesicSuite):
    @pytest.fixture
    def path(self):
        return GeodesicProbPath(PolynomialConvexScheduler(2), Sphere(), velocity="autodiff")


def test_paths_stay_on_the_manifold_and_hit_the_ends(manifold):
    path = GeodesicProbPath(CondOTScheduler(), manifold)
    x_0, x_1 = random_points(manifold, 32), random_points(manifold, 32)
    t = torch.linspace(0, 1, 32, dtype=torch.float64)
    s = path.sample(x_0, x_1, t)
    assert manifold.check_point_on_manifold(s.x_t, atol=1e-7, rtol=1e-7)
    if not isinstance(manifold, Lorentz):  # geoopt 0.5.1's Lorentz check fails on float64
        assert manifold.check_vector_on_tangent(s.x_t, s.dx_t, atol=1e-7, rtol=1e-7)
    ends = path.sample(x_0, x_1, torch.zeros(32, dtype=torch.float64)).x_t
    torch.testing.assert_close(
        manifold.dist(ends, x_0), torch.zeros_like(manifold.dist(ends, x_0)), atol=1e-6, rtol=0
    )
    ends = path.sample(x_0, x_1, torch.ones(32, dtype=torch.float64)).x_t
    torch.testing.assert_close(
        manifold.dist(ends, x_1), torch.zeros_like(manifold.dist(ends, x_1)), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("scheduler", [CondOTScheduler(), PolynomialConvexScheduler(3)])
def test_closed_form_velocity_equals_autodiff(manifold, scheduler):
    closed = GeodesicProbPath(scheduler, manifold, velocity="closed_form")
    auto = GeodesicProbPath(scheduler, manifold, velocity="autodiff")
    x_0, x_1 = random_points(manifold, 16), random_points(manifold, 16)
    t = torch.cat(
        [torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), torch.rand(13, dtype=torch.float64)]
    )
    a, b = closed.sample(x_0, x_1, t), auto.sample(x_0, x_1, t)
    torch.testing.assert_close(a.x_t, b.x_t)
    torch.testing.assert_close(a.dx_t, b.dx_t, rtol=1e-6, atol=1e-6)


def test_velocity_norm_is_the_geodesic_speed():
    s = Sphere()
    path = GeodesicProbPath(CondOTScheduler(), s)
    x_0, x_1 = random_points(s, 64), random_points(s, 64)
    out = path.sample(x_0, x_1, torch.rand(64, dtype=torch.float64))
    torch.testing.assert_close(out.dx_t.norm(dim=-1), s.dist(x_0, x_1))


def test_velocity_is_finite_at_the_ends_with_gradients_through_t():
    path = GeodesicProbPath(CondOTScheduler(), Sphere())
    x_0, x_1 = random_points(Sphere(), 4), random_points(Sphere(), 4)
    t = torch.tensor([0.0, 1e-12, 1 - 1e-12, 1.0], dtype=torch.float64, requires_grad=True)
    s = path.sample(x_0, x_1, t)
    (s.x_t.sum() + s.dx_t.sum()).backward()
    assert torch.isfinite(s.dx_t).all() and torch.isfinite(t.grad).all()


def test_auto_mode_picks_closed_form_for_known_manifolds():
    assert GeodesicProbPath(CondOTScheduler(), Sphere()).velocity == "closed_form"
    assert GeodesicProbPath(CondOTScheduler(), torus_x_sphere()).velocity == "closed_form"
    assert GeodesicProbPath(CondOTScheduler(), MANIFOLDS["spd"]()).velocity == "closed_form"


def test_rejects_a_scheduler_that_is_not_convex():
    with pytest.raises(TypeError, match="scheduler must be a ConvexScheduler"):
        GeodesicProbPath(VPScheduler(), Sphere())


def test_rejects_a_manifold_without_logmap():
    with pytest.raises(TypeError, match=r"manifold must implement expmap and logmap.*logmap"):
        GeodesicProbPath(CondOTScheduler(), geoopt.Stiefel())
    with pytest.raises(TypeError, match=r"manifold.manifolds\[1\] must implement"):
        GeodesicProbPath(
            CondOTScheduler(), geoopt.ProductManifold((Sphere(), 3), (geoopt.Stiefel(), (3, 2)))
        )
    with pytest.raises(TypeError, match="manifold must implement"):
        GeodesicProbPath(CondOTScheduler(), object())


def test_rejects_unknown_velocity_mode():
    with pytest.raises(ValueError, match="velocity must be"):
        GeodesicProbPath(CondOTScheduler(), Sphere(), velocity="finite_differences")
