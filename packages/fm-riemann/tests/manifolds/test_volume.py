"""The volume module against the metric (brute force in a chart) and closed-form divergences."""

from __future__ import annotations

import math

import geoopt
import pytest
import torch

from fm_core.solver.divergence import ExactDivergence, HutchinsonDivergence
from fm_core.testing import compile_fullgraph
from fm_riemann import Lorentz, PoincareBall, Sphere, Stereographic, SymmetricPositiveDefinite
from fm_riemann._volume_reference import (
    log_volume_density,
    tangent_basis,
)
from fm_riemann.manifolds._volume import volume_of
from fm_riemann.testing import (
    EXTRA_MANIFOLDS,
    MANIFOLDS,
    ManifoldTests,
    random_points,
    tangent_field,
)

ALL = {**MANIFOLDS, **EXTRA_MANIFOLDS}
NAMES = sorted(ALL)


def riemannian_divergence_exact(vol, u, x):
    """What the solver computes: fm-core's exact trace with the projection, plus the volume term."""
    return ExactDivergence(x, project=vol.project)(u, x, create_graph=True) + vol.correction(x, u)


def riemannian_divergence_hutchinson(vol, u, x, probes):
    """The same with Hutchinson's estimator and the given probes ``[K, B, *point_shape]``."""
    est = HutchinsonDivergence(x, num_probes=probes.shape[0], project=vol.project)
    est.probes = probes
    return est(u, x, create_graph=True) + vol.correction(x, u)


class TestExtraManifolds(ManifoldTests):
    """The shared properties on the manifolds outside ``MANIFOLDS`` (Scaled, Lorentz products)."""

    @pytest.fixture(params=sorted(EXTRA_MANIFOLDS))
    def manifold(self, request):
        return EXTRA_MANIFOLDS[request.param]()


def smooth_field(manifold, point_shape):
    return tangent_field(manifold, tuple(point_shape))


def _points(name, batch=3, seed=0):
    m = ALL[name]()
    return m, random_points(m, batch, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", NAMES)
def test_log_density_is_the_metric_volume(name):
    m, x = _points(name)
    got = volume_of(m).log_density(x)
    want = torch.stack([log_volume_density(m, p) for p in x])
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_correction_is_the_derivative_of_the_log_density(name):
    m, x = _points(name)
    vol = volume_of(m)
    u = smooth_field(m, x.shape[1:])(x)
    xg = x.clone().requires_grad_(True)
    log_rho = vol.log_density(xg).sum()  # one point per row: the gradient is per point
    grad = torch.autograd.grad(log_rho, xg)[0] if log_rho.requires_grad else torch.zeros_like(x)
    want = (grad * u).flatten(1).sum(1)
    torch.testing.assert_close(vol.correction(x, u), want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_projection_is_orthogonal_onto_the_tangent_space(name):
    m, x = _points(name)
    vol, g = volume_of(m), torch.Generator().manual_seed(3)
    a, b = (torch.randn(x.shape, dtype=x.dtype, generator=g) for _ in range(2))
    pa, pb = vol.project(x, a), vol.project(x, b)
    torch.testing.assert_close((pa * b).flatten(1).sum(1), (a * pb).flatten(1).sum(1))
    torch.testing.assert_close(vol.project(x, pa), pa)
    t = m.proju(x, a)  # geoopt's projection (oblique on the hyperboloid) has the same range
    torch.testing.assert_close(vol.project(x, t), t)
    n = tangent_basis(m, x[0]).shape[1]
    assert vol.dim(tuple(x.shape[1:])) == n
    eye = torch.eye(x[0].numel(), dtype=x.dtype).view(-1, *x.shape[1:])
    trace = vol.project(x[:1].expand_as(eye), eye).flatten(1).diagonal().sum()
    assert round(trace.item()) == n


@pytest.mark.parametrize("name", NAMES)
def test_hutchinson_over_the_scaled_basis_probes_is_exact(name):
    # The divergence itself is checked against the metric in ManifoldTests; here Hutchinson's
    # estimator averaged over the probes sqrt(D) e_i (E[zz^T] = I) must equal the exact trace.
    m, x = _points(name)
    vol = volume_of(m)
    xg = x.clone().requires_grad_(True)
    u = smooth_field(m, x.shape[1:])(xg)
    exact = riemannian_divergence_exact(vol, u, xg).detach()
    d = x[0].numel()
    probes = math.sqrt(d) * torch.eye(d, dtype=x.dtype).view(d, 1, *x.shape[1:]).expand(d, *x.shape)
    est = riemannian_divergence_hutchinson(vol, u, xg, probes).detach()
    torch.testing.assert_close(est, exact, rtol=1e-9, atol=1e-9)


def test_hutchinson_is_unbiased_with_gaussian_probes():
    m, x = _points("lorentz_x_spd_x_torus", batch=2)
    vol, k = volume_of(m), 2000
    field = smooth_field(m, x.shape[1:])
    xg = x.clone().requires_grad_(True)
    exact = riemannian_divergence_exact(vol, field(xg), xg).detach()
    # One probe per copy of each point: k single-probe estimates per point in one call.
    xk = x.repeat(k, *([1] * (x.ndim - 1))).requires_grad_(True)
    z = torch.randn(1, *xk.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(0))
    singles = riemannian_divergence_hutchinson(vol, field(xk), xk, z).detach().view(k, -1)
    se = singles.std(0) / math.sqrt(k)
    assert ((singles.mean(0) - exact).abs() < 4 * se).all(), (singles.mean(0), exact, se)
    assert (se > 1e-3).all()  # the probes do vary


def test_the_hyperboloid_minkowski_projection_gives_the_same_divergence():
    # div_g u = tr(Pi_x J) with geoopt's Minkowski projection and no volume term.
    m = Lorentz(k=2.0).double()
    x = random_points(m, 6)
    vol = volume_of(m)
    xg = x.clone().requires_grad_(True)
    u = smooth_field(m, x.shape[1:])(xg)
    d = x.shape[1]
    basis = torch.eye(d, dtype=x.dtype)[:, None].expand(d, *x.shape)
    (jt,) = torch.autograd.grad(u, xg, basis, retain_graph=True, is_grads_batched=True)
    jac = jt.permute(1, 0, 2)  # [B, D (output), D (input)]
    pi = m.proju(x[:, None, :].expand(-1, d, -1), torch.eye(d, dtype=x.dtype).expand(6, d, d))
    minkowski = torch.einsum("bij,bji->b", jac, pi.transpose(1, 2))  # tr(J Pi), Pi columns
    torch.testing.assert_close(riemannian_divergence_exact(vol, u, xg).detach(), minkowski)


def _killing_fields():
    e = torch.tensor([0.3, -0.8, 0.5], dtype=torch.float64)

    def gyro(name):  # generator of x -> (s e) (+)_k x, an isometry of the k-stereographic model
        # k read from the manifold: PoincareBall(c=1).double() has k = -1 + 6e-8 (its softplus
        # parameter was rounded in float32).
        k = MANIFOLDS[name]().k.item()
        return lambda x: (1 - k * x.pow(2).sum(-1, keepdim=True)) * e + 2 * k * (x @ e)[:, None] * x

    boost = torch.zeros(4, 4, dtype=torch.float64)
    boost[0, 1] = boost[1, 0] = 0.7  # boost along x_1 ...
    boost[2, 3], boost[3, 2] = -1.1, 1.1  # ... and a rotation in the (x_2, x_3) plane
    a = torch.tensor([[0.2, -0.5, 0.1], [0.4, 0.3, -0.2], [0.0, 0.6, -0.1]], dtype=torch.float64)
    return [
        ("poincare", gyro("poincare")),
        ("stereographic_hyperbolic", gyro("stereographic_hyperbolic")),
        ("stereographic_sphere", gyro("stereographic_sphere")),
        ("lorentz", lambda x: x @ boost.T),
        ("spd", lambda x: a @ x + x @ a.T),
        ("spd", lambda x: 0.7 * x),
    ]


@pytest.mark.parametrize("name,field", _killing_fields())
def test_killing_fields_have_zero_divergence(name, field):
    m, x = _points(name, batch=16)
    vol = volume_of(m)
    xg = x.clone().requires_grad_(True)
    u = field(xg)
    torch.testing.assert_close(m.proju(x, u.detach()), u.detach())  # tangent
    div = riemannian_divergence_exact(vol, u, xg).detach()
    torch.testing.assert_close(div, torch.zeros_like(div), rtol=0, atol=1e-10)
    coordinate = div - vol.correction(x, u.detach())
    assert coordinate.abs().max() > 0.1  # the volume term is what makes it vanish


@pytest.mark.parametrize(
    "manifold,origin,curvature",
    [
        (PoincareBall(c=0.5).double(), torch.zeros(3), -0.5),
        (Stereographic(k=0.5).double(), torch.zeros(3), 0.5),
        (
            Lorentz(k=2.0).double(),
            torch.tensor([math.sqrt(2.0), 0, 0, 0], dtype=torch.float64),
            -0.5,
        ),
        (geoopt.Scaled(Sphere(), 2.0).double(), torch.tensor([0.0, 0, 1]), 0.25),
    ],
)
def test_the_laplacian_of_half_the_squared_distance(manifold, origin, curvature):
    # u = grad(r^2 / 2) = -log_x(o); on a space form of curvature K and dimension n,
    # div u = 1 + (n - 1) r sqrt|K| coth(r sqrt|K|)  (cot for K > 0).
    m = manifold
    o = origin.double()
    if isinstance(m, geoopt.Stereographic):  # k as stored (PoincareBall rounds c in float32)
        curvature = m.k.item()
    x = random_points(m, 16, generator=torch.Generator().manual_seed(1))
    if isinstance(m, geoopt.Scaled):
        x = x[(x * o).sum(-1) > -0.5]  # stay away from the cut locus (the antipode)
        scale = m.scale.double()
        field = lambda y: -m.logmap(y, o.expand_as(y)) / scale  # coordinate velocity
    else:
        field = lambda y: -m.logmap(y, o.expand_as(y))
    xg = x.clone().requires_grad_(True)
    div = riemannian_divergence_exact(volume_of(m), field(xg), xg).detach()
    r = m.dist(x, o.expand_as(x))
    s = math.sqrt(abs(curvature)) * r
    n = volume_of(m).dim(tuple(x.shape[1:]))
    cot = s.cosh() / s.sinh() if curvature < 0 else s.cos() / s.sin()
    torch.testing.assert_close(div, 1 + (n - 1) * s * cot, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(
    "manifold,match",
    [
        (geoopt.Stiefel(), "manifold has no Riemannian volume"),
        (SymmetricPositiveDefinite("LEM"), "affine-invariant"),
        (
            geoopt.ProductManifold((Sphere(), 3), (geoopt.Stiefel(), (3, 2))),
            r"manifold\.manifolds\[1\]",
        ),
        (geoopt.Scaled(geoopt.BirkhoffPolytope()), r"manifold\.base"),
    ],
)
def test_manifolds_without_a_volume_are_refused(manifold, match):
    with pytest.raises(TypeError, match=match):
        volume_of(manifold)


@pytest.mark.parametrize("name", ["poincare", "lorentz", "spd", "lorentz_x_spd_x_torus"])
def test_projection_and_volume_term_compile_without_graph_breaks(name):
    # They run in every step of a likelihood solve: fullgraph, same values as eager.
    torch._dynamo.reset()
    m, x = _points(name, batch=4)
    vol = volume_of(m)
    u = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(0))

    def step(x, u):
        return vol.project(x, u), vol.correction(x, u)

    for got, want in zip(compile_fullgraph(step)(x, u), step(x, u)):
        torch.testing.assert_close(got, want)
