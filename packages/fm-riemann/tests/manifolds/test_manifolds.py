"""Property tests over every supported manifold, and the safe-geometry guarantees of ours."""

from __future__ import annotations

import math

import geoopt
import pytest
import torch

from fm_riemann import SO3, FlatTorus, Sphere
from fm_riemann.manifolds.so3 import hat
from fm_riemann.testing import MANIFOLDS, OURS, ManifoldTests, random_points


class TestEveryManifold(ManifoldTests):
    """The shared properties, on every manifold we ship or re-export (and products of them)."""

    @pytest.fixture(params=sorted(MANIFOLDS))
    def manifold(self, request):
        return MANIFOLDS[request.param]()


def test_the_suite_catches_a_broken_expmap():
    class Broken(Sphere):
        def expmap(self, x, u):
            return self.projx(x + 1.01 * u)  # not the exponential map

    suite, m = TestEveryManifold(), Broken()
    with pytest.raises(AssertionError):
        suite.test_expmap_inverts_logmap(m)


@pytest.mark.parametrize("name", OURS)
def test_logmap_at_coincident_points_is_zero_with_finite_gradients(name):
    m = MANIFOLDS[name]()
    x = random_points(m, 8)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    log = m.logmap(a, b)
    dist = m.dist(a, b)
    torch.testing.assert_close(log, torch.zeros_like(log), rtol=0, atol=1e-12)
    assert torch.all(dist.abs() < 1e-12)
    (log.sum() + dist.sum()).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("name", OURS)
def test_expmap_of_zero_is_identity_with_finite_gradients(name):
    m = MANIFOLDS[name]()
    x = random_points(m, 8)
    u = torch.zeros_like(x, requires_grad=True)
    out = m.expmap(x, u)
    torch.testing.assert_close(out, x)
    out.sum().backward()
    assert torch.isfinite(u.grad).all()


def test_geoopt_sphere_is_unsafe_where_ours_is_not():
    # The reason Sphere exists: geoopt's distance at coincident points is not 0.
    x = Sphere().random_uniform(4, 3, dtype=torch.float64)
    assert geoopt.Sphere().dist(x, x).min() > 1e-5
    assert Sphere().dist(x, x).max() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sphere_antipode_is_a_defined_half_turn(dtype):
    s = Sphere()
    x = s.random_uniform(32, 3, dtype=dtype)
    log = s.logmap(x, -x)
    torch.testing.assert_close(log.norm(dim=-1), torch.full((32,), math.pi, dtype=dtype))
    torch.testing.assert_close((log * x).sum(-1), torch.zeros(32, dtype=dtype), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.expmap(x, log), -x, atol=1e-5, rtol=0)
    torch.testing.assert_close(s.dist(x, -x), torch.full((32,), math.pi, dtype=dtype))


def test_sphere_is_accurate_near_coincidence_and_antipode():
    s = Sphere()
    x = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    for theta in [1e-9, 1e-4, 0.5, math.pi - 1e-4]:
        y = torch.tensor([[math.cos(theta), math.sin(theta), 0.0]], dtype=torch.float64)
        torch.testing.assert_close(s.dist(x, y), torch.tensor([theta], dtype=torch.float64))
        expected = torch.tensor([[0.0, theta, 0.0]], dtype=torch.float64)
        torch.testing.assert_close(s.logmap(x, y), expected, rtol=1e-7, atol=1e-12)


def test_torus_wraps_and_breaks_ties_to_minus_pi():
    t = FlatTorus()
    x = torch.tensor([[0.1, 6.2, 1.0]], dtype=torch.float64)
    y = torch.tensor([[6.2, 0.1, 1.0 + math.pi]], dtype=torch.float64)
    d = 2 * math.pi - 6.1
    torch.testing.assert_close(
        t.logmap(x, y), torch.tensor([[-d, d, -math.pi]], dtype=torch.float64)
    )
    assert t.projx(torch.tensor([-1e-9]))[0] < 2 * math.pi
    assert t.projx(torch.tensor([-1e-9, 7.0])).max() < 2 * math.pi


def test_so3_rodrigues_matches_matrix_exp_and_handles_half_turns():
    so3 = SO3()
    omega = torch.randn(16, 3, dtype=torch.float64)
    torch.testing.assert_close(so3.exp_algebra(omega), torch.linalg.matrix_exp(hat(omega)))
    n = torch.nn.functional.normalize(torch.randn(16, 3, dtype=torch.float64), dim=-1)
    r = random_points(so3, 16)
    for angle in [math.pi, math.pi - 1e-8, 1e-9]:
        s = r @ so3.exp_algebra(angle * n)
        log = so3.logmap(r, s)
        torch.testing.assert_close(so3.expmap(r, log), s, rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(
            so3.dist(r, s), torch.full((16,), math.sqrt(2) * angle, dtype=torch.float64)
        )


def test_so3_tangent_projection_is_orthogonal():
    so3 = SO3()
    r = random_points(so3, 8)
    u = torch.randn_like(r)
    p = so3.proju(r, u)
    assert so3.check_vector_on_tangent(r, p)
    torch.testing.assert_close(so3.inner(r, u - p, p), torch.zeros(8, dtype=torch.float64))
