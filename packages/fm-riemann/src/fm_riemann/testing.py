"""Test helpers for manifold code: random points on every supported manifold, and
``ManifoldTests``, the properties every manifold passes (run by pytest; the module itself does
not import pytest, so the examples can use its helpers without it).

``ManifoldTests`` lives here rather than in ``fm_core.testing`` because its defaults draw points
on geoopt manifolds, and fm-core does not depend on geoopt.

Example:
    >>> from fm_riemann import Sphere
    >>> from fm_riemann.testing import random_points
    >>> random_points(Sphere(), 4).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import math

import geoopt
import torch

from fm_core.solver.divergence import ExactDivergence
from fm_riemann._volume_reference import chart_divergence, coordinate_inner, flow_log_density
from fm_riemann.manifolds import (
    SO3,
    Euclidean,
    FlatTorus,
    Lorentz,
    PoincareBall,
    ProductManifold,
    Sphere,
    Stereographic,
    SymmetricPositiveDefinite,
)
from fm_riemann.manifolds._volume import has_volume, volume_of
from fm_riemann.solver import RiemannianODESolver

__all__ = [
    "EXTRA_MANIFOLDS",
    "MANIFOLDS",
    "OURS",
    "ManifoldTests",
    "TimeMLP",
    "random_points",
    "sample_vmf_mixture",
    "se3_like",
    "tangent_field",
    "torus_x_sphere",
]


def random_points(manifold, batch: int, dtype=torch.float64, generator=None) -> torch.Tensor:
    """Points on ``manifold``, shape ``[batch, *point_shape]``, away from cut loci in practice."""
    g = generator
    if isinstance(manifold, ProductManifold):
        parts = [random_points(m, batch, dtype, g).reshape(batch, -1) for m in manifold.manifolds]
        return torch.cat(parts, dim=-1)
    if isinstance(manifold, geoopt.Scaled):  # the same points; distances times the scale
        return random_points(manifold.base, batch, dtype, g)
    if isinstance(manifold, (Sphere, geoopt.Sphere)):
        return manifold.projx(torch.randn(batch, 3, dtype=dtype, generator=g))
    if isinstance(manifold, FlatTorus):
        return manifold.projx(torch.rand(batch, 2, dtype=dtype, generator=g) * 6.283)
    if isinstance(manifold, SO3):
        return manifold.projx(torch.randn(batch, 3, 3, dtype=dtype, generator=g))
    if isinstance(manifold, Stereographic):  # PoincareBall too; positive curvature: a sphere
        return manifold.expmap0(0.7 * torch.randn(batch, 3, dtype=dtype, generator=g))
    if isinstance(manifold, Lorentz):
        u = torch.randn(batch, 3, dtype=dtype, generator=g)
        u = torch.cat([torch.zeros(batch, 1, dtype=dtype), 0.7 * u], dim=-1)
        return manifold.expmap0(u)
    if isinstance(manifold, SymmetricPositiveDefinite):
        a = torch.randn(batch, 3, 3, dtype=dtype, generator=g)
        return a @ a.transpose(-1, -2) + 0.5 * torch.eye(3, dtype=dtype)
    if isinstance(manifold, geoopt.Euclidean):
        return torch.randn(batch, 3, dtype=dtype, generator=g)
    raise NotImplementedError(
        f"random_points does not know {type(manifold).__name__}: override "
        "ManifoldTests.make_points for it"
    )


def torus_x_sphere() -> ProductManifold:
    return ProductManifold((FlatTorus(), 2), (Sphere(), 3))


def se3_like() -> ProductManifold:
    return ProductManifold((Euclidean(), 3), (SO3(), (3, 3)))


MANIFOLDS = {
    "sphere": Sphere,
    "torus": FlatTorus,
    "euclidean": Euclidean,
    "so3": SO3,
    # geoopt stores their curvature as a float32 buffer: float64 points need a float64 manifold.
    "poincare": lambda: PoincareBall().double(),
    "stereographic_sphere": lambda: Stereographic(k=0.5).double(),
    "lorentz": lambda: Lorentz().double(),
    "spd": SymmetricPositiveDefinite,
    "torus_x_sphere": torus_x_sphere,
    "se3_like": se3_like,
    "stereographic_hyperbolic": lambda: Stereographic(k=-0.7).double(),
    "poincare_x_sphere": lambda: ProductManifold((PoincareBall(), 3), (Sphere(), 3)).double(),
}
OURS = ["sphere", "torus", "so3"]
# More manifolds with likelihoods, kept out of MANIFOLDS (which every fm-riemann suite runs)
# because geoopt 0.5.1's Lorentz.check_vector_on_tangent raises on float64 in a product (and the
# path suites' float32 checks are loose on a scaled factor); GeodesicProbPath accepts Scaled
# (tests/path/test_geodesic.py checks dx_t there).
# ManifoldTests passes on them (tests/manifolds/test_volume.py).
EXTRA_MANIFOLDS = {
    "scaled_sphere": lambda: geoopt.Scaled(Sphere(), 2.0).double(),
    "scaled_poincare": lambda: geoopt.Scaled(PoincareBall(c=0.5), 0.5).double(),
    "lorentz_x_spd_x_torus": lambda: ProductManifold(
        (Lorentz(k=2.0), 4), (SymmetricPositiveDefinite(), (3, 3)), (FlatTorus(), 2)
    ).double(),
    "scaled_lorentz_x_so3": lambda: ProductManifold(
        (geoopt.Scaled(Lorentz(), 1.5), 4), (SO3(), (3, 3))
    ).double(),
}


VMF_MEANS = torch.nn.functional.normalize(
    torch.tensor([[1.0, 1.0, 1.0], [-1.0, 0.5, -0.5], [0.0, -1.0, 0.8]]), dim=-1
)


def sample_vmf_mixture(
    n: int, kappa: float = 8.0, means: torch.Tensor | None = None, generator=None
) -> torch.Tensor:
    """An equal mixture of von Mises-Fisher(mu_k, kappa) on S^2, ``[n, 3]``, by Wood's sampler.

    Along the mean, $w = 1 + \\log(u + (1 - u) e^{-2\\kappa}) / \\kappa$ with $u \\sim U(0, 1)$;
    the rest is a uniform tangent direction scaled by $\\sqrt{1 - w^2}$. ``means`` defaults to
    ``VMF_MEANS`` (three unit vectors).
    """
    means = VMF_MEANS if means is None else means
    mu = means[torch.randint(len(means), (n,), generator=generator)]
    u = torch.rand(n, 1, generator=generator)
    w = 1 + torch.log(u + (1 - u) * math.exp(-2 * kappa)) / kappa
    v = torch.randn(n, 3, generator=generator)
    v = torch.nn.functional.normalize(v - (v * mu).sum(-1, keepdim=True) * mu, dim=-1)
    return w * mu + (1 - w * w).clamp_min(0).sqrt() * v


class TimeMLP(torch.nn.Module):
    """A small velocity network ``(x [B, D], t [B] or 0-dim) -> [B, D]`` for examples and tests."""

    def __init__(self, dim: int = 3, width: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim + 1, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, dim),
        )

    def forward(self, x, t):
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        return self.net(torch.cat([x, t[:, None].to(x)], -1))


class ManifoldTests:
    """Properties every manifold passes, in float64 (geoopt's property tests, as a suite).

    Subclass as ``class TestMine(ManifoldTests)`` and provide a ``manifold`` pytest fixture; override
    ``make_points(manifold, batch, generator)`` for a manifold ``random_points`` does not know
    (points ``[batch, *point_shape]`` in float64, away from cut loci), and ``assert_same_point``
    where coordinates of one point are not unique (the torus's angles are compared modulo
    $2\\pi$ by default). Checked: points and ``projx`` land on the manifold and ``projx`` is
    idempotent; ``logmap(x, x) == 0``; ``expmap(x, 0) == x``; ``expmap(x, logmap(x, y)) == y``;
    ``logmap`` and ``proju`` give tangent vectors (``proju`` fixes them); ``expmap`` of a tangent vector stays on the
    manifold; float64 stays float64.

    Likelihoods (densities w.r.t. the Riemannian volume), on manifolds that have one in
    ``fm_riemann.manifolds._volume`` (the others must be refused with ``TypeError``): the zero
    field returns the source density (exact and Hutchinson); the divergence the solver uses
    (tangent projection + volume term) equals the divergence computed from the metric alone
    (``manifold.inner`` in a chart, by autograd); ``compute_likelihood`` of a nonlinear flow
    equals the change of variables of the solver's own map (the log-determinant of its Jacobian
    between tangent bases, by autograd, plus the log-volume densities of the metric) within
    ``likelihood_atol`` nats.
    """

    likelihood_atol: float = 1e-4

    atol: float = 1e-7

    def make_points(self, manifold, batch: int, generator: torch.Generator) -> torch.Tensor:
        return random_points(manifold, batch, torch.float64, generator)

    def assert_same_point(self, manifold, a: torch.Tensor, b: torch.Tensor) -> None:
        if isinstance(manifold, FlatTorus):  # angles are defined modulo 2 pi
            a, b = torch.stack([a.sin(), a.cos()]), torch.stack([b.sin(), b.cos()])
        torch.testing.assert_close(a, b, rtol=self.atol, atol=self.atol)

    def _points(self, manifold, seed: int = 0, batch: int = 16) -> torch.Tensor:
        return self.make_points(manifold, batch, torch.Generator().manual_seed(seed))

    def _on(self, manifold, x: torch.Tensor) -> None:
        ok, reason = manifold.check_point_on_manifold(x, explain=True, atol=1e-6, rtol=1e-6)
        assert ok, reason

    def _tangent(self, manifold, x: torch.Tensor, u: torch.Tensor) -> None:
        # proju fixes tangent vectors. (geoopt 0.5.1's Lorentz.check_vector_on_tangent compares
        # a float64 inner product with a float32 zero and raises, so it is not used here.)
        torch.testing.assert_close(manifold.proju(x, u), u, rtol=1e-6, atol=1e-6)

    def test_points_are_float64_and_on_the_manifold(self, manifold):
        x = self._points(manifold)
        assert x.dtype == torch.float64
        self._on(manifold, x)

    def test_projx_lands_on_the_manifold_and_is_idempotent(self, manifold):
        x = self._points(manifold)
        noise = torch.randn(x.shape, dtype=x.dtype, generator=torch.Generator().manual_seed(1))
        once = manifold.projx(x + 1e-2 * noise)
        assert once.dtype == torch.float64
        self._on(manifold, once)
        torch.testing.assert_close(manifold.projx(once), once, rtol=self.atol, atol=self.atol)
        torch.testing.assert_close(manifold.projx(x), x, rtol=1e-6, atol=1e-6)

    def test_logmap_of_a_point_to_itself_is_zero(self, manifold):
        x = self._points(manifold)
        log = manifold.logmap(x, x.clone())
        torch.testing.assert_close(log, torch.zeros_like(log), rtol=0, atol=self.atol)

    def test_expmap_of_zero_is_the_point(self, manifold):
        x = self._points(manifold)
        self.assert_same_point(manifold, manifold.expmap(x, torch.zeros_like(x)), x)

    def test_expmap_inverts_logmap(self, manifold):
        x, y = self._points(manifold, 0), self._points(manifold, 1)
        u = manifold.logmap(x, y)
        assert u.dtype == torch.float64
        self._tangent(manifold, x, u)
        self.assert_same_point(manifold, manifold.expmap(x, u), y)

    def test_expmap_of_a_tangent_vector_stays_on_the_manifold(self, manifold):
        x = self._points(manifold)
        g = torch.Generator().manual_seed(2)
        u = manifold.proju(x, 0.5 * torch.randn(x.shape, dtype=x.dtype, generator=g))
        self._tangent(manifold, x, u)
        self._on(manifold, manifold.expmap(x, u))

    # ------------------------------------------------------------------ likelihoods
    def _refuses_likelihood(self, manifold) -> bool:
        """On a manifold without a volume, check that likelihoods are refused; else False."""
        if has_volume(manifold):
            return False
        x = self._points(manifold, batch=2)
        solver = RiemannianODESolver(manifold, lambda x, t: torch.zeros_like(x))
        try:
            solver.compute_likelihood(x, _log_p0, 0.5)
        except TypeError as e:
            assert "no Riemannian volume" in str(e)
            return True
        raise AssertionError("compute_likelihood must refuse a manifold without a volume")

    def test_likelihood_of_the_zero_field_is_the_source_density(self, manifold):
        if self._refuses_likelihood(manifold):
            return
        x = self._points(manifold, batch=4)
        solver = RiemannianODESolver(manifold, lambda x, t: torch.zeros_like(x))
        for divergence in ("exact", "hutchinson"):
            x_0, log_p = solver.compute_likelihood(x, _log_p0, 0.25, divergence=divergence)
            self.assert_same_point(manifold, x_0, x)
            torch.testing.assert_close(log_p, _log_p0(x), rtol=0, atol=1e-12)

    def test_divergence_is_the_divergence_of_the_metric(self, manifold):
        if self._refuses_likelihood(manifold):
            return
        x = self._points(manifold, batch=2)
        field = tangent_field(manifold, tuple(x.shape[1:]))
        volume = volume_of(manifold)
        xg = x.clone().requires_grad_(True)
        u = field(xg)
        div = ExactDivergence(xg, project=volume.project)(u, xg) + volume.correction(xg, u)
        want = torch.stack([chart_divergence(manifold, field, p) for p in x])
        torch.testing.assert_close(div.detach(), want, rtol=1e-7, atol=1e-7)

    def test_likelihood_is_the_change_of_variables_of_the_flow(self, manifold):
        if self._refuses_likelihood(manifold):
            return
        x = self._points(manifold, batch=1)
        field = tangent_field(manifold, tuple(x.shape[1:]))
        solver = RiemannianODESolver(manifold, lambda x, t: field(x))
        # SO(3)'s projx is an SVD, whose gradient at a rotation (equal singular values) is NaN.
        # Stepping by expmap, rk4 is of order 2 on curved manifolds: smaller steps.
        step_by, h = ("expmap", 0.05) if _has_factor(manifold, SO3) else ("projx", 0.2)
        x_0, log_p = solver.compute_likelihood(
            x, _log_p0, h, "rk4", exact_divergence=True, step_by=step_by
        )
        grid = torch.tensor([1.0, 0.0], dtype=x.dtype)

        def flow(z):  # the solver's own map x_1 -> x_0
            return solver.sample(
                z[None], h, method="rk4", time_grid=grid, enable_grad=True, step_by=step_by
            )[0]

        want = torch.stack([flow_log_density(manifold, flow, p, _log_p0) for p in x])
        assert (log_p - _log_p0(x_0)).abs().max() > 10 * self.likelihood_atol  # it did change
        torch.testing.assert_close(log_p, want, rtol=0, atol=self.likelihood_atol)


def _has_factor(manifold, kind) -> bool:
    if isinstance(manifold, geoopt.ProductManifold):
        return any(_has_factor(m, kind) for m in manifold.manifolds)
    if isinstance(manifold, geoopt.Scaled):
        return _has_factor(manifold.base, kind)
    return isinstance(manifold, kind)


def _speed2(manifold, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Squared Riemannian speed ``[B]`` of coordinate velocities (SPD by a solve: geoopt's
    ``inner`` goes through an eigendecomposition, ten times slower under autograd)."""
    if isinstance(manifold, geoopt.ProductManifold):
        parts = [
            _speed2(m, manifold.take_submanifold_value(x, i), manifold.take_submanifold_value(u, i))
            for i, m in enumerate(manifold.manifolds)
        ]
        return sum(parts)
    if isinstance(manifold, SymmetricPositiveDefinite):
        a = torch.linalg.solve(x, u)
        return (a * a.transpose(-1, -2)).sum((-1, -2))
    return coordinate_inner(manifold, x, u, u)


def _log_p0(x: torch.Tensor) -> torch.Tensor:
    """A smooth (unnormalised) source log-density for the likelihood properties, ``[B]``."""
    return -0.5 * x.flatten(1).pow(2).sum(1).log1p()


def tangent_field(manifold, point_shape: tuple[int, ...], seed: int = 0, speed: float = 0.5):
    """A fixed smooth nonlinear tangent field ``[B, *point_shape] -> [B, *point_shape]``.

    ``proju`` of a small tanh network of the coordinates, scaled to Riemannian speed below
    ``speed`` (so its flow stays inside the ball, away from a stereographic chart's point at
    infinity, and on the SPD cone for unit times).
    """
    g = torch.Generator().manual_seed(seed)
    d = math.prod(point_shape)
    w1 = torch.randn(d, 8, dtype=torch.float64, generator=g) / math.sqrt(d)
    b1 = torch.randn(8, dtype=torch.float64, generator=g)
    w2 = torch.randn(8, d, dtype=torch.float64, generator=g) / 2

    def field(x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(x.flatten(1) @ w1.to(x) + b1.to(x)) @ w2.to(x)
        u = manifold.proju(x, h.view_as(x))
        norm2 = _speed2(manifold, x, u).reshape(-1, *([1] * (x.ndim - 1)))
        return speed * u / (1 + norm2).sqrt()

    return field
