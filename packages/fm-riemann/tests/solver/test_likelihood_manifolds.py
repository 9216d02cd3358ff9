"""Likelihoods on hyperbolic, spherical-stereographic, SPD and scaled manifolds, end to end.

Closed forms: isometries (Möbius translations of the ball, Lorentz boosts, SPD congruences)
carry the wrapped normal at the origin to the wrapped normal at the moved centre and keep
uniform densities; linear flows have known Jacobians. Monte Carlo: the flow's density
integrates to one and gives regions the mass its samples put there.
"""

from __future__ import annotations

import math

import geoopt
import pytest
import torch
import torch.utils.checkpoint
from torch import nn

from fm_core.testing.ode import LikelihoodTests
from fm_riemann import (
    Lorentz,
    PoincareBall,
    RiemannianODESolver,
    Sphere,
    Stereographic,
    SymmetricPositiveDefinite,
)
from fm_riemann.manifolds._volume import volume_of
from fm_riemann.testing import random_points, tangent_field

F64 = torch.float64


def log_wrapped_normal(r, n, sigma, c):
    """Isotropic wrapped normal at distance r on a space of curvature -c (c > 0), dimension n."""
    s = math.sqrt(c) * r
    return (
        -0.5 * n * math.log(2 * math.pi * sigma**2)
        - r**2 / (2 * sigma**2)
        + (n - 1) * torch.log(s / torch.sinh(s))
    )


def near_origin(m, n, dim=3, scale=0.4):
    """Points within a few units of distance of the origin of a stereographic model: far out,
    coordinates (stereographic sphere) or log-densities (ball) get large and so do their errors."""
    g = torch.Generator().manual_seed(0)
    return m.expmap0(scale * torch.randn(n, dim, dtype=F64, generator=g))


def gyro_field(k, e, speed):
    """Generator of x -> (a e) (+)_k x: an isometry of the k-stereographic model (|e| = 1)."""
    return lambda x, t: (
        speed * ((1 - k * x.pow(2).sum(-1, keepdim=True)) * e + 2 * k * (x @ e)[:, None] * x)
    )


def gyro_shift(k, speed):
    """a(speed): the Möbius shift after unit time, tanh (k < 0) or tan (k > 0) of the rapidity."""
    r = math.sqrt(abs(k))
    return (math.tanh(r * speed) if k < 0 else math.tan(r * speed)) / r


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
@pytest.mark.parametrize("manifold", [PoincareBall(), Stereographic(k=-0.7)], ids=["ball", "k-0.7"])
def test_a_mobius_translation_moves_the_wrapped_normal(manifold, divergence):
    m = manifold.double()
    k, sigma, speed = m.k.item(), 0.5, 0.8
    e = torch.tensor([0.6, 0.0, -0.8], dtype=F64)
    x_1 = near_origin(m, 64)
    origin = torch.zeros(3, dtype=F64)
    log_p0 = lambda x: log_wrapped_normal(m.dist(origin.expand_as(x), x), 3, sigma, -k)
    solver = RiemannianODESolver(m, gyro_field(k, e, speed))
    x_0, log_p = solver.compute_likelihood(x_1, log_p0, 0.05, "rk4", divergence=divergence)
    a = gyro_shift(k, speed) * e
    torch.testing.assert_close(x_0, m.mobius_add(-a.expand_as(x_1), x_1), rtol=1e-6, atol=1e-6)
    # The pushforward is the wrapped normal at the moved centre (Rademacher probes are exact
    # here: the Jacobian is a rotation plus a multiple of I).
    want = log_wrapped_normal(m.dist(a.expand_as(x_1), x_1), 3, sigma, -k)
    torch.testing.assert_close(log_p, want, rtol=0, atol=1e-4)
    assert (log_p - log_p0(x_1)).abs().max() > 0.5  # the density did move


def test_a_lorentz_boost_moves_the_wrapped_normal():
    m = Lorentz(k=2.0).double()
    gen = torch.zeros(4, 4, dtype=F64)
    gen[0, 1] = gen[1, 0] = 0.7  # boost along x_1, rotation in the (x_2, x_3) plane
    gen[2, 3], gen[3, 2] = -1.1, 1.1
    x_1 = random_points(m, 32, generator=torch.Generator().manual_seed(0))
    o = torch.tensor([math.sqrt(2.0), 0, 0, 0], dtype=F64)
    log_p0 = lambda x: log_wrapped_normal(m.dist(o.expand_as(x), x), 3, 0.6, 0.5)
    solver = RiemannianODESolver(m, lambda x, t: x @ gen.T)
    x_0, log_p = solver.compute_likelihood(x_1, log_p0, 0.05, "rk4", exact_divergence=True)
    torch.testing.assert_close(x_0, x_1 @ torch.linalg.matrix_exp(-gen).T, rtol=1e-6, atol=1e-6)
    centre = torch.linalg.matrix_exp(gen) @ o
    want = log_wrapped_normal(m.dist(centre.expand_as(x_1), x_1), 3, 0.6, 0.5)
    torch.testing.assert_close(log_p, want, rtol=0, atol=1e-4)
    assert (log_p - log_p0(x_1)).abs().max() > 0.5


def test_the_uniform_density_on_a_stereographic_sphere_is_kept_by_an_isometry():
    k = 0.5  # S^3 of radius 1/sqrt(k): volume 2 pi^2 R^3
    m = Stereographic(k=k).double()
    log_uniform = -math.log(2 * math.pi**2 * k**-1.5)
    e = torch.tensor([0.0, 0.6, 0.8], dtype=F64)
    x_1 = near_origin(m, 64)
    solver = RiemannianODESolver(m, gyro_field(k, e, 0.5))
    log_p0 = lambda x: torch.full(x.shape[:1], log_uniform, dtype=F64)
    x_0, log_p = solver.compute_likelihood(x_1, log_p0, 0.05, "rk4", exact_divergence=True)
    a = gyro_shift(k, 0.5) * e
    torch.testing.assert_close(x_0, m.mobius_add(-a.expand_as(x_1), x_1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(log_p, log_p0(x_1), rtol=0, atol=1e-4)


def _spd_log_p0(x):
    return -0.5 * torch.logdet(x).pow(2) - 0.1 * x.diagonal(dim1=-2, dim2=-1).sum(-1)


def test_an_spd_congruence_keeps_the_density_and_a_translation_has_the_volume_jacobian():
    m = SymmetricPositiveDefinite()
    x_1 = random_points(m, 16, generator=torch.Generator().manual_seed(0))
    a = torch.tensor([[0.2, -0.5, 0.1], [0.4, 0.3, -0.2], [0.0, 0.6, -0.1]], dtype=F64)
    # X -> e^{tA} X e^{tA^T}: an isometry of the affine-invariant metric.
    solver = RiemannianODESolver(m, lambda x, t: a @ x + x @ a.T)
    x_0, log_p = solver.compute_likelihood(x_1, _spd_log_p0, 0.05, "rk4", exact_divergence=True)
    ea = torch.linalg.matrix_exp(-a)
    torch.testing.assert_close(x_0, ea @ x_1 @ ea.T, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(log_p, _spd_log_p0(x_0), rtol=0, atol=1e-4)
    assert (log_p - _spd_log_p0(x_1)).abs().max() > 0.5
    # X -> X + tS (a constant field): coordinate Jacobian 1, so only the volume density moves,
    # log p_1(X_1) = log p_0(X_0) + log rho(X_0) - log rho(X_1), rho = det X^{-2}.
    s = torch.tensor([[0.5, 0.2, 0.0], [0.2, 0.4, 0.1], [0.0, 0.1, 0.3]], dtype=F64)
    x_1 = x_1 + s
    solver = RiemannianODESolver(m, lambda x, t: s.expand_as(x))
    x_0, log_p = solver.compute_likelihood(x_1, _spd_log_p0, 0.05, "rk4", exact_divergence=True)
    torch.testing.assert_close(x_0, x_1 - s)
    want = _spd_log_p0(x_0) - 2 * torch.logdet(x_0) + 2 * torch.logdet(x_1)
    torch.testing.assert_close(log_p, want, rtol=0, atol=1e-4)


def test_a_dilation_of_the_ball_has_the_closed_form_jacobian():
    m = PoincareBall().double()
    x_1 = 0.6 * random_points(m, 32, generator=torch.Generator().manual_seed(0))
    solver = RiemannianODESolver(m, lambda x, t: -0.3 * x)  # x_t = e^{-0.3 t} x_0
    x_0, log_p = solver.compute_likelihood(x_1, _ball_log_p0, 0.05, "rk4", exact_divergence=True)
    torch.testing.assert_close(x_0, math.exp(0.3) * x_1, rtol=1e-7, atol=1e-9)
    rho = volume_of(m).log_density
    want = _ball_log_p0(x_0) + rho(x_0) + 0.3 * 3 - rho(x_1)
    torch.testing.assert_close(log_p, want, rtol=0, atol=1e-4)


def _ball_log_p0(x):
    return -x.pow(2).sum(-1)


def test_the_uniform_density_of_a_scaled_sphere_flows_to_a_density_of_mass_one():
    # Scaled(Sphere, 2) is a sphere of radius 2: area 16 pi. An equal-area Fibonacci lattice
    # integrates p_1 as mean(p_1) * 16 pi.
    m = geoopt.Scaled(Sphere(), 2.0).double()
    n = 800
    i = torch.arange(n, dtype=F64)
    z = 1 - (2 * i + 1) / n
    phi = i * math.pi * (3 - math.sqrt(5))
    x_1 = torch.stack([(1 - z * z).sqrt() * phi.cos(), (1 - z * z).sqrt() * phi.sin(), z], -1)
    axis = torch.tensor([0.0, 0.0, 1.5], dtype=F64)
    solver = RiemannianODESolver(m, lambda x, t: -m.proju(x, axis.expand_as(x)))
    log_area = math.log(16 * math.pi)
    _, log_p = solver.compute_likelihood(
        x_1, lambda x: torch.full(x.shape[:1], -log_area, dtype=F64), 0.1, "rk4",
        exact_divergence=True,
    )  # fmt: skip
    assert abs(log_p.exp().mean().item() * 16 * math.pi - 1) < 2e-3
    assert log_p.std() > 0.5


def test_monte_carlo_on_the_ball_normalisation_and_mass_of_a_region():
    # p_0 = wrapped normal at 0 on the hyperbolic plane; a nonlinear flow; q = a wider wrapped
    # normal. Importance sampling: E_q[p_1 / q] = 1 and E_q[1_R p_1 / q] = P(x_1 in R), the
    # fraction of the flow's samples in R = {x : x_0 > 0.1}.
    m = PoincareBall().double()
    g = torch.Generator().manual_seed(0)
    field = tangent_field(m, (2,), seed=1, speed=1.0)
    solver = RiemannianODESolver(m, lambda x, t: field(x))
    origin = torch.zeros(2, dtype=F64)

    def wrapped_normal(sigma, n):
        v = sigma * torch.randn(n, 2, dtype=F64, generator=g)  # Riemannian tangent vector at 0
        x = m.expmap0(v / 2)  # lambda_0 = 2: coordinates of a tangent vector at the origin
        torch.testing.assert_close(m.dist(origin.expand_as(x), x), v.norm(dim=-1))
        return x

    log_wn = lambda x, sigma: log_wrapped_normal(m.dist(origin.expand_as(x), x), 2, sigma, 1.0)
    n = 2000
    x_1 = solver.sample(wrapped_normal(0.6, n), 0.2, method="rk4")
    y = wrapped_normal(1.0, n)
    _, log_p1 = solver.compute_likelihood(
        y, lambda x: log_wn(x, 0.6), 0.2, "rk4", exact_divergence=True
    )
    w = (log_p1 - log_wn(y, 1.0)).exp()
    assert abs(w.mean() - 1) < 4 * w.std() / math.sqrt(n), w.mean()
    inside = (y[:, 0] > 0.1).to(F64)
    mass = (inside * w).mean()
    frac = (x_1[:, 0] > 0.1).to(F64).mean()
    se = math.sqrt((inside * w).var() / n + frac * (1 - frac) / n)
    assert abs(mass - frac) < 4 * se, (mass, frac, se)
    assert abs(frac - 0.5) > 8 * se  # the flow did move mass into or out of R


# ---------------------------------------------------------------- fm-core's shared likelihood suite
# (closed form through sample(return_log_prob=True), the round trip through compute_likelihood,
# Hutchinson against exact, and adjoint / checkpoint gradients equal to backprop), on each kind
# of volume term (SPD's, slower through its eigendecompositions, is checked above and in
# ManifoldTests). The models carry a parameter (a speed) for the gradient test.


class _Speed(nn.Module):
    def __init__(self, field, speed):
        super().__init__()
        self.field = field
        self.speed = nn.Parameter(torch.tensor(speed, dtype=F64))

    def forward(self, x, t):
        return self.speed * self.field(x, t)


class _Suite(LikelihoodTests):
    """fm-core's suite as it is (its checkpointed steps run through geoopt's TorchScript maps)."""


class TestPoincareBallLikelihood(_Suite):
    """A Möbius translation carries the wrapped normal at 0 to the one at the moved centre."""

    m = PoincareBall().double()
    e = torch.tensor([0.6, 0.0, -0.8], dtype=F64)

    @pytest.fixture
    def solver(self):
        return RiemannianODESolver(self.m, _Speed(gyro_field(self.m.k.item(), self.e, 1.0), 0.8))

    def likelihood_problem(self):
        m, k = self.m, self.m.k.item()
        o = torch.zeros(3, dtype=F64)
        a = gyro_shift(k, 0.8) * self.e
        wn = lambda c: lambda x: log_wrapped_normal(m.dist(c.expand_as(x), x), 3, 0.5, -k)
        return near_origin(m, 6), wn(o), wn(a)


class TestLorentzLikelihood(_Suite):
    """A boost with a rotation carries the wrapped normal to the one at the moved centre."""

    m = Lorentz(k=2.0).double()
    gen = torch.tensor([[0, 0.7, 0, 0], [0.7, 0, 0, 0], [0, 0, 0, -1.1], [0, 0, 1.1, 0]], dtype=F64)

    @pytest.fixture
    def solver(self):
        return RiemannianODESolver(self.m, _Speed(lambda x, t: x @ self.gen.T, 1.0))

    def likelihood_problem(self):
        m = self.m
        o = torch.tensor([math.sqrt(2.0), 0, 0, 0], dtype=F64)
        wn = lambda c: lambda x: log_wrapped_normal(m.dist(c.expand_as(x), x), 3, 0.6, 0.5)
        x_0 = random_points(m, 6, generator=torch.Generator().manual_seed(1))
        return x_0, wn(o), wn(torch.linalg.matrix_exp(self.gen) @ o)
