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


@pytest.mark.parametrize("dim", [3, 5])
@pytest.mark.parametrize("differentiable", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sphere_slerp_fast_path_matches_the_fused_form(dtype, differentiable, dim):
    # The [B, D] sphere path takes the slerp fast path (plain coefficients without a gradient,
    # guarded ones when t requires grad; column sums at D = 3, a mat-vec otherwise); the
    # sphere's fused closed form is the truth, with identical, antipodal and nearly antipodal
    # pairs and both ends of the time interval.
    s = Sphere()
    g = torch.Generator().manual_seed(0)
    x_0 = s.projx(torch.randn(64, dim, dtype=dtype, generator=g))
    x_1 = s.projx(torch.randn(64, dim, dtype=dtype, generator=g))
    x_1[:4], x_1[4:8] = -x_0[:4], x_0[4:8]
    x_1[8] = s.projx(-x_0[8] + 1e-5 * torch.randn(dim, dtype=dtype, generator=g))
    x_1[9] = s.projx(x_0[9] + 1e-4 * torch.randn(dim, dtype=dtype, generator=g))
    t = torch.rand(64, dtype=dtype, generator=g)
    t[:2], t[4:6] = 0.0, 1.0
    t.requires_grad_(differentiable)
    out = GeodesicProbPath(PolynomialConvexScheduler(2), s).sample(x_0, x_1, t)
    with torch.no_grad():
        point, velocity = s.geodesic_point_and_velocity(x_0, x_1, (t * t)[:, None])
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.x_t.detach(), point, atol=tol, rtol=0)
    torch.testing.assert_close(out.dx_t.detach(), 2 * t.detach()[:, None] * velocity,
                               atol=10 * tol, rtol=0)  # fmt: skip
    if differentiable:  # finite gradients through t, identical pairs (rows 4-7) included
        (grad,) = torch.autograd.grad(out.x_t[8:].sum() + out.dx_t[4:8].sum(), t)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("dim", [3, 5])
def test_sphere_slerp_fast_path_has_finite_forward_mode_tangents_at_identical_pairs(dim):
    # torch.func.jvp sets no requires_grad, so the plain coefficients run under forward mode;
    # at x_1 = x_0 the derivative of the point along a tangent v of x_1 is kappa v (the
    # geodesic's endpoint derivative at zero length), and every tangent must be finite.
    s = Sphere()
    g = torch.Generator().manual_seed(1)
    x_0 = s.projx(torch.randn(8, dim, dtype=torch.float64, generator=g))
    v = s.proju(x_0, torch.randn(8, dim, dtype=torch.float64, generator=g))
    t = torch.rand(8, dtype=torch.float64, generator=g)
    path = GeodesicProbPath(CondOTScheduler(), s)

    def point_and_velocity(x_1):
        out = path.sample(x_0, x_1, t)
        return out.x_t, out.dx_t

    (point, _), (d_point, d_velocity) = torch.func.jvp(point_and_velocity, (x_0,), (v,))
    assert torch.isfinite(d_point).all() and torch.isfinite(d_velocity).all()
    torch.testing.assert_close(d_point, t[:, None] * v, atol=1e-12, rtol=0)
    torch.testing.assert_close(point, x_0, atol=1e-12, rtol=0)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_the_path_on_a_scaled_manifold_has_the_exact_velocity(scale):
    import geoopt

    from fm_core.path.scheduler import CondOTScheduler as _CondOT
    from fm_riemann import RiemannianFlowMatchingLoss
    from fm_riemann import Sphere as _Sphere

    path = GeodesicProbPath(_CondOT(), geoopt.Scaled(_Sphere(), scale))
    g = torch.Generator().manual_seed(0)
    x0 = _Sphere().projx(torch.randn(8, 3, generator=g, dtype=torch.float64))
    x1 = _Sphere().projx(torch.randn(8, 3, generator=g, dtype=torch.float64))
    t, h = torch.full((8,), 0.3, dtype=torch.float64), 1e-6
    s = path.sample(x0, x1, t)
    fd = (path.sample(x0, x1, t + h).x_t - path.sample(x0, x1, t - h).x_t) / (2 * h)
    torch.testing.assert_close(s.dx_t, fd, atol=1e-8, rtol=0)
    assert RiemannianFlowMatchingLoss(path)(s.dx_t, s).item() == 0.0
