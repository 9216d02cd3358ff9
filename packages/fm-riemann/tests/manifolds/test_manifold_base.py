"""A user manifold written as for the reference (four methods) works with our paths and solvers."""

from __future__ import annotations

import math

import geoopt
import pytest
import torch

from fm_core.path.scheduler import CondOTScheduler
from fm_riemann import GeodesicProbPath, Manifold, RiemannianODESolver
from fm_riemann.testing import ManifoldTests


class Circle(Manifold):
    """The unit circle in R^2, with only the reference's four methods."""

    def projx(self, x):
        return x / x.norm(dim=-1, keepdim=True)

    def proju(self, x, u):
        return u - (u * x).sum(-1, keepdim=True) * x

    def expmap(self, x, u):
        n = u.norm(dim=-1, keepdim=True)
        return x * torch.cos(n) + u * torch.sinc(n / math.pi)

    def logmap(self, x, y):
        v = self.proju(x, y - x)
        angle = torch.arccos((x * y).sum(-1, keepdim=True).clamp(-1, 1))
        return v * angle / v.norm(dim=-1, keepdim=True).clamp_min(1e-300)


def _angles(n, seed):
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 6


def _points(theta):
    return torch.stack([theta.cos(), theta.sin()], -1)


class TestCircleIsAManifold(ManifoldTests):
    @pytest.fixture
    def manifold(self):
        return Circle()

    def make_points(self, manifold, batch, generator):
        return _points(torch.rand(batch, generator=generator, dtype=torch.float64) * 3)


def test_four_methods_are_enough_and_geoopt_is_served():
    c = Circle()
    assert isinstance(c, geoopt.Manifold) and c.name == "Circle"
    x = _points(_angles(4, 0))
    u = c.proju(x, torch.randn(4, 2, dtype=torch.float64))
    torch.testing.assert_close(c.inner(x, u), (u * u).sum(-1))
    torch.testing.assert_close(c.retr(x, u), c.expmap(x, u))
    assert c.check_point_on_manifold(x)
    ok, reason = c.check_point_on_manifold(2 * x, explain=True)
    assert not ok and "projx(x) != x" in reason
    assert c.check_vector_on_tangent(x, u) and not c.check_vector_on_tangent(x, x)


def test_missing_methods_still_fail_at_instantiation():
    class NoLog(Manifold):
        projx = Circle.projx
        proju = Circle.proju
        expmap = Circle.expmap

    with pytest.raises(TypeError, match="logmap"):
        NoLog()


def test_geodesic_path_and_solver_on_a_user_manifold():
    c = Circle()
    a, b = _angles(8, 1), _angles(8, 2)
    a, b = a, a + (b - 3) / 2  # arcs shorter than pi: the geodesic is the short way
    path = GeodesicProbPath(CondOTScheduler(), c)
    assert path.velocity == "autodiff"  # not a manifold with known exact geodesics
    t = torch.full((8,), 0.25, dtype=torch.float64)
    s = path.sample(_points(a), _points(b), t)
    torch.testing.assert_close(s.x_t, _points(a + 0.25 * (b - a)))
    # speed along the arc is the angle difference
    torch.testing.assert_close(s.dx_t.norm(dim=-1), (b - a).abs())

    # a constant rotation, solved on the user manifold: angle grows by t
    field = lambda x, t: torch.stack([-x[:, 1], x[:, 0]], -1)
    solver = RiemannianODESolver(c, field)
    out = solver.sample(_points(a), 0.05, method="rk4")
    torch.testing.assert_close(out, _points(a + 1.0), atol=1e-7, rtol=0)
    assert solver.last_nfe == 80


def test_same_samples_as_the_reference_manifold():
    from flow_matching.path import GeodesicProbPath as RefPath
    from flow_matching.utils.manifolds import Manifold as RefManifold

    class RefCircle(RefManifold):
        projx, proju, expmap, logmap = Circle.projx, Circle.proju, Circle.expmap, Circle.logmap

    x_0, x_1 = _points(_angles(6, 3)), _points(_angles(6, 4))
    t = torch.linspace(0.1, 0.9, 6, dtype=torch.float64)
    ours = GeodesicProbPath(CondOTScheduler(), Circle()).sample(x_0, x_1, t)
    ref = RefPath(CondOTScheduler(), RefCircle()).sample(x_0, x_1, t)
    torch.testing.assert_close(ours.x_t, ref.x_t)
    torch.testing.assert_close(ours.dx_t, ref.dx_t)


def test_inner_keeps_the_batch_shape_with_and_without_keepdim():
    m = Circle()
    x = m.projx(torch.randn(5, 2))
    u = m.proju(x, torch.randn(5, 2))
    assert m.inner(x, u).shape == (5,)
    assert m.inner(x, u, keepdim=True).shape == (5, 1)
    torch.testing.assert_close(m.inner(x, u, keepdim=True).squeeze(-1), (u * u).sum(-1))
