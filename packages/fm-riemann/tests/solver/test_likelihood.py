"""compute_likelihood: uniform densities, divergence truths, Hutchinson, products, errors."""

from __future__ import annotations

import math

import pytest
import torch

from fm_core.solver.divergence import ExactDivergence, HutchinsonDivergence
from fm_riemann import FlatTorus, Manifold, ProductManifold, RiemannianODESolver, Sphere

LOG_4PI = math.log(4 * math.pi)


def zero(x, t):
    return torch.zeros_like(x)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_field_gives_the_uniform_density_on_the_sphere(exact, dtype):
    s = Sphere()
    x1 = s.random_uniform(16, 3, dtype=dtype)
    x0, logp = RiemannianODESolver(s, zero).compute_likelihood(
        x1, lambda x: torch.full(x.shape[:1], -LOG_4PI, dtype=x.dtype), 0.1, exact_divergence=exact
    )
    torch.testing.assert_close(x0, x1)
    torch.testing.assert_close(logp, torch.full((16,), -LOG_4PI, dtype=dtype), atol=1e-5, rtol=0)


def test_zero_field_gives_the_uniform_density_on_the_torus():
    d = 3
    t = FlatTorus()
    x1 = t.random_uniform(16, d, dtype=torch.float64)
    _, logp = RiemannianODESolver(t, zero).compute_likelihood(
        x1, lambda x: torch.full(x.shape[:1], -d * math.log(2 * math.pi), dtype=x.dtype), 0.1
    )
    torch.testing.assert_close(
        logp, torch.full((16,), -d * math.log(2 * math.pi), dtype=torch.float64), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("exact", [True, False])
def test_a_rotation_preserves_density(method, exact):
    omega = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    field = lambda x, t: torch.linalg.cross(omega.expand_as(x), x)
    s = Sphere()
    x1 = s.random_uniform(32, 3, dtype=torch.float64)
    x0, logp = RiemannianODESolver(s, field).compute_likelihood(
        x1,
        lambda x: torch.full(x.shape[:1], -LOG_4PI, dtype=x.dtype),
        0.05,
        method=method,
        exact_divergence=exact,
    )
    torch.testing.assert_close(
        logp, torch.full((32,), -LOG_4PI, dtype=torch.float64), atol=1e-10, rtol=0
    )
    assert (s.dist(x0, x1) > 0.1).all()  # it did move


def test_divergence_of_a_gradient_field_is_the_laplacian():
    # u = grad_S2 (a . x) = P_x a; div u = Laplacian(a . x) = -2 a . x on S^2.
    s = Sphere()
    a = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    x = s.random_uniform(64, 3, dtype=torch.float64).requires_grad_()
    u = s.proju(x, a.expand_as(x))
    exact = ExactDivergence(x, project=s.proju)(u, x, create_graph=True)
    torch.testing.assert_close(exact, -2 * (x * a).sum(-1).detach())
    est = HutchinsonDivergence(x, 4000, "gaussian", project=s.proju)(u, x)
    torch.testing.assert_close(est, -2 * (x * a).sum(-1).detach(), atol=0.15, rtol=0)


def test_likelihood_of_a_nonuniform_flow_matches_change_of_variables():
    # Flow u = -P_x a for time 1 moves mass toward -a; log p1 must integrate to 1 over S^2:
    # an equal-area Fibonacci lattice of N points gives the integral as mean(p1) * 4π.
    s = Sphere()
    a = torch.tensor([0.0, 0.0, 1.5], dtype=torch.float64)
    field = lambda x, t: -s.proju(x, a.expand_as(x))
    n = 4000
    i = torch.arange(n, dtype=torch.float64)
    z = 1 - (2 * i + 1) / n
    phi = i * math.pi * (3 - math.sqrt(5))
    r = (1 - z * z).sqrt()
    x1 = torch.stack([r * phi.cos(), r * phi.sin(), z], -1)
    _, logp = RiemannianODESolver(s, field).compute_likelihood(
        x1,
        lambda x: torch.full(x.shape[:1], -LOG_4PI, dtype=x.dtype),
        0.05,
        method="rk4",
        exact_divergence=True,
    )
    assert abs((logp.exp() * 4 * math.pi).mean().item() - 1) < 1e-3
    assert logp.std() > 0.5


def test_product_manifold_likelihood():
    m = ProductManifold((FlatTorus(), 2), (Sphere(), 3))
    x1 = m.projx(torch.cat([torch.rand(8, 2) * 6, torch.randn(8, 3)], -1).double())
    target = -2 * math.log(2 * math.pi) - LOG_4PI
    omega = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    field = lambda x, t: torch.cat(
        [torch.ones_like(x[:, :2]), torch.linalg.cross(omega.expand(8, 3), x[:, 2:])], -1
    )
    _, logp = RiemannianODESolver(m, field).compute_likelihood(
        x1, lambda x: torch.full(x.shape[:1], target, dtype=x.dtype), 0.1, exact_divergence=True
    )
    torch.testing.assert_close(logp, torch.full((8,), target, dtype=torch.float64))


def test_intermediates_and_grid():
    s = Sphere()
    x1 = s.random_uniform(4, 3, dtype=torch.float64)
    xs, logp = RiemannianODESolver(s, zero).compute_likelihood(
        x1,
        lambda x: torch.zeros(x.shape[0], dtype=x.dtype),
        0.1,
        time_grid=torch.tensor([1.0, 0.5, 0.0]),
        return_intermediates=True,
    )
    assert xs.shape == (3, 4, 3) and logp.shape == (4,)


def test_likelihood_bad_inputs():
    s = Sphere()
    x1 = s.random_uniform(4, 3)
    solver = RiemannianODESolver(s, zero)
    with pytest.raises(ValueError, match=r"log_p0 must return one log-density per sample"):
        solver.compute_likelihood(x1, lambda x: torch.zeros(x.shape), 0.1)
    with pytest.raises(TypeError, match="log_p0 must be callable"):
        solver.compute_likelihood(x1, 3.0, 0.1)
    with pytest.raises(ValueError, match="x_1 must lie on the manifold"):
        solver.compute_likelihood(2 * x1, lambda x: torch.zeros(4), 0.1)

    class Mine(Manifold):  # a manifold of the user's: no volume known for it
        def expmap(self, x, u):
            return x + u

        def logmap(self, x, y):
            return y - x

        def projx(self, x):
            return x

        def proju(self, x, u):
            return u

    with pytest.raises(TypeError, match="manifold has no Riemannian volume"):
        RiemannianODESolver(Mine(), zero).compute_likelihood(
            torch.zeros(4, 3), lambda x: torch.zeros(4), 0.1
        )
