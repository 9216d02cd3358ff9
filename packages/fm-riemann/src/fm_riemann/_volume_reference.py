r"""Brute-force references for likelihoods on manifolds, from the metric alone (float64, slow).

Used by ``fm_riemann.testing.ManifoldTests`` and the tests: nothing here uses
``fm_riemann.manifolds._volume``; everything comes from the manifold's own ``inner``, ``proju``,
``projx`` and autograd (``torch.autograd.functional.jacobian``) in a chart:

- ``coordinate_inner``: the metric applied to coordinate velocities.
- ``tangent_basis``: a Euclidean-orthonormal basis of $T_xM$ (the range of ``proju``).
- ``log_volume_density``: $\tfrac12\log\det(B^\top G B)$ for that basis $B$, i.e.
  $\log dV_g/dV_E$.
- ``chart_divergence``: $\operatorname{div}_g u = \partial_i v^i + \tfrac12 v^i\partial_i\log\det G$
  with $v$ the field in a chart around $x$ and $G$ the metric there.
- ``flow_log_density``: the change of variables of a map between manifolds,
  $\log p_1(x_1) = \log p_0(x_0) + \log|\det(B_0^\top D\Phi\, B_1)| + \log\rho(x_0) -
  \log\rho(x_1)$ for $\Phi: x_1 \mapsto x_0$.
"""

from __future__ import annotations

from collections.abc import Callable

import geoopt
import torch
from torch import Tensor
from torch.autograd.functional import jacobian

from fm_riemann.manifolds.so3 import SO3, hat
from fm_riemann.manifolds.torus import FlatTorus

__all__ = [
    "chart",
    "chart_divergence",
    "coordinate_inner",
    "flow_log_density",
    "log_volume_density",
    "tangent_basis",
]


def coordinate_inner(manifold, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """The metric at ``x`` (``[B, *point_shape]``) of coordinate velocities ``u``, ``v`` -> ``[B]``.

    ``manifold.inner`` except where geoopt's tangent vectors are not coordinate velocities:
    ``Scaled(base, s)`` writes a velocity $w$ as $s w$ and keeps the base's inner product.
    """
    if isinstance(manifold, geoopt.ProductManifold):
        total = 0
        for i, m in enumerate(manifold.manifolds):
            parts = [manifold.take_submanifold_value(t, i) for t in (x, u, v)]
            total = total + coordinate_inner(m, *parts)
        return total
    if isinstance(manifold, geoopt.Scaled):
        s = manifold.scale.to(x.dtype)
        return s * s * coordinate_inner(manifold.base, x, u, v)
    # keepdim=True: geoopt 0.5.1's Stereographic.inner broadcasts [B, 1] * [B] to [B, B] without it.
    out = manifold.inner(x, u, v, keepdim=True)
    return out.reshape(x.shape[: x.ndim - manifold.ndim])


def tangent_basis(manifold, x: Tensor) -> Tensor:
    """Euclidean-orthonormal basis of the range of ``proju`` at one point ``x`` -> ``[D, n]``."""
    dim = x.numel()
    eye = torch.eye(dim, dtype=x.dtype).view(dim, *x.shape)
    rows = manifold.proju(x.expand(dim, *x.shape), eye).reshape(dim, dim)
    _, s, vh = torch.linalg.svd(rows)
    n = int((s > 1e-9 * s.max()).sum())
    return vh[:n].T


def log_volume_density(manifold, x: Tensor) -> Tensor:
    r"""$\log dV_g/dV_E$ at one point ``x`` (0-dim), from the Gram matrix of a tangent basis."""
    b = tangent_basis(manifold, x)
    n = b.shape[1]
    bi = b.T.reshape(n, 1, *x.shape).expand(n, n, *x.shape).reshape(n * n, *x.shape)
    bj = b.T.reshape(1, n, *x.shape).expand(n, n, *x.shape).reshape(n * n, *x.shape)
    gram = coordinate_inner(manifold, x.expand(n * n, *x.shape), bi, bj).reshape(n, n)
    return 0.5 * torch.logdet(gram)


def chart(manifold, x: Tensor) -> tuple[Callable[[Tensor], Tensor], int]:
    """A smooth chart ``psi: R^n -> M`` with ``psi(0) = x`` (one point), and ``n``.

    Open sets of a vector space (ball, stereographic, SPD, Euclidean, torus) use $x + By$;
    SO(3) uses $x\\exp([y]_\\times)$ (its ``projx`` is an SVD, not twice differentiable at a
    rotation); others $\\mathrm{projx}(x + By)$, $B$ = ``tangent_basis``.
    """
    if isinstance(manifold, geoopt.ProductManifold):
        charts = [
            chart(m, manifold.take_submanifold_value(x, i))
            for i, m in enumerate(manifold.manifolds)
        ]
        sizes = [n for _, n in charts]

        def psi(y: Tensor) -> Tensor:
            parts = torch.split(y, sizes)
            return torch.cat([f(p).flatten() for (f, _), p in zip(charts, parts)])

        return psi, sum(sizes)
    if isinstance(manifold, geoopt.Scaled):
        return chart(manifold.base, x)
    if isinstance(manifold, SO3):
        return (lambda y: x @ torch.linalg.matrix_exp(hat(y))), 3
    b = tangent_basis(manifold, x)
    linear = (geoopt.Stereographic, geoopt.SymmetricPositiveDefinite, geoopt.Euclidean, FlatTorus)
    if isinstance(manifold, linear):
        return (lambda y: x + (b @ y).view_as(x)), b.shape[1]
    return (lambda y: manifold.projx(x + (b @ y).view_as(x))), b.shape[1]


def chart_divergence(manifold, field: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    r"""$\operatorname{div}_g u(x)$ at one point ``x`` for ``field: [B, *shape] -> [B, *shape]``.

    In the chart $\psi$ (``chart``), $C(y) = \partial\psi/\partial y$, the field's coordinates
    are $v = C^+ u(\psi(y))$ and the metric $G = [g(C_i, C_j)]$; then
    $\operatorname{div}_g u = \operatorname{tr}\,\partial v/\partial y + \tfrac12 v \cdot
    \nabla_y \log\det G$ at $y = 0$.
    """
    psi, n = chart(manifold, x)
    shape = x.shape

    def frame(y: Tensor) -> tuple[Tensor, Tensor]:
        c = jacobian(lambda z: psi(z).reshape(-1), y, create_graph=True)  # [D, n]
        return psi(y), c

    def coords(y: Tensor) -> Tensor:
        p, c = frame(y)
        u = field(p.reshape(1, *shape))[0].reshape(-1)
        return torch.linalg.solve(c.T @ c, c.T @ u)

    def log_det_metric(y: Tensor) -> Tensor:
        p, c = frame(y)
        cols = c.T.reshape(n, *shape)
        ci = cols[:, None].expand(n, n, *shape).reshape(n * n, *shape)
        cj = cols[None, :].expand(n, n, *shape).reshape(n * n, *shape)
        pts = p.reshape(1, *shape).expand(n * n, *shape)
        return torch.logdet(coordinate_inner(manifold, pts, ci, cj).reshape(n, n))

    y0 = torch.zeros(n, dtype=x.dtype)
    dv = jacobian(coords, y0)
    dlog = jacobian(log_det_metric, y0)
    return dv.diagonal().sum() + 0.5 * (coords(y0) * dlog).sum()


def flow_log_density(
    manifold,
    flow: Callable[[Tensor], Tensor],
    x_1: Tensor,
    log_p0: Callable[[Tensor], Tensor],
) -> Tensor:
    r"""$\log p_1(x_1)$ of the pushforward of $p_0$ by the inverse of ``flow`` (0-dim).

    ``flow`` maps one point ``x_1`` (``point_shape``) to $x_0 = \Phi(x_1)$ on the manifold,
    differentiably. With Euclidean-orthonormal tangent bases $B_0, B_1$ and
    $\rho = dV_g/dV_E$: $\log p_1(x_1) = \log p_0(x_0) + \log|\det B_0^\top D\Phi B_1| +
    \log\rho(x_0) - \log\rho(x_1)$.
    """
    x_0 = flow(x_1)
    d_phi = jacobian(lambda z: flow(z).reshape(-1), x_1, vectorize=True)
    d_phi = d_phi.reshape(x_0.numel(), x_1.numel())
    b_0, b_1 = tangent_basis(manifold, x_0.detach()), tangent_basis(manifold, x_1)
    log_det = torch.linalg.slogdet(b_0.T @ d_phi @ b_1).logabsdet
    log_rho = log_volume_density(manifold, x_0.detach()) - log_volume_density(manifold, x_1)
    return log_p0(x_0.detach()[None])[0] + log_det + log_rho
