"""Test helpers for manifold code: random points on every supported manifold (needs pytest only
for the fixtures in the test suites that use it).

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

from fm_riemann.manifolds import (
    SO3,
    Euclidean,
    FlatTorus,
    Lorentz,
    PoincareBall,
    ProductManifold,
    Sphere,
    SymmetricPositiveDefinite,
)

__all__ = ["MANIFOLDS", "OURS", "random_points", "se3_like", "torus_x_sphere"]


def random_points(manifold, batch: int, dtype=torch.float64, generator=None) -> torch.Tensor:
    """Points on ``manifold``, shape ``[batch, *point_shape]``, away from cut loci in practice."""
    g = generator
    if isinstance(manifold, ProductManifold):
        parts = [random_points(m, batch, dtype, g).reshape(batch, -1) for m in manifold.manifolds]
        return torch.cat(parts, dim=-1)
    if isinstance(manifold, (Sphere, geoopt.Sphere)):
        return manifold.projx(torch.randn(batch, 3, dtype=dtype, generator=g))
    if isinstance(manifold, FlatTorus):
        return manifold.projx(torch.rand(batch, 2, dtype=dtype, generator=g) * 6.283)
    if isinstance(manifold, SO3):
        return manifold.projx(torch.randn(batch, 3, 3, dtype=dtype, generator=g))
    if isinstance(manifold, PoincareBall):
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
    raise NotImplementedError(type(manifold))


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
    "lorentz": lambda: Lorentz().double(),
    "spd": SymmetricPositiveDefinite,
    "torus_x_sphere": torus_x_sphere,
    "se3_like": se3_like,
}
OURS = ["sphere", "torus", "so3"]


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
