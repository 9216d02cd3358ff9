r"""Riemannian divergence of a tangent field on an isometrically embedded manifold.

For $M \subset \mathbb{R}^D$ with the induced metric and $P_x$ the orthogonal projection onto
$T_xM$, the divergence of a tangent field $u$ (extended to a neighbourhood in any way) is
$\mathrm{div}_M u(x) = \mathrm{tr}(P_x\, \partial u / \partial x\, P_x) = \mathrm{tr}(P_x J)$.
"""

from __future__ import annotations

import geoopt
import torch
from torch import Tensor

from fm_riemann.manifolds.euclidean import Euclidean
from fm_riemann.manifolds.so3 import SO3
from fm_riemann.manifolds.sphere import Sphere
from fm_riemann.manifolds.torus import FlatTorus

__all__ = ["check_embedded", "divergence_exact", "divergence_hutchinson"]

_EMBEDDED = (Sphere, geoopt.Sphere, Euclidean, geoopt.Euclidean, FlatTorus, SO3)


def check_embedded(manifold: object, name: str = "manifold") -> None:
    """Raise ``TypeError`` unless ``manifold``'s ``proju`` is the orthogonal tangent projection.

    The likelihood needs the volume form of the induced (ambient Euclidean) metric: Sphere,
    FlatTorus, Euclidean, SO3 and products of them. Hyperbolic and SPD manifolds have a
    non-Euclidean metric in their coordinates and need a volume correction we do not implement.
    """
    if isinstance(manifold, geoopt.ProductManifold):
        for i, m in enumerate(manifold.manifolds):
            check_embedded(m, f"{name}.manifolds[{i}]")
        return
    if not isinstance(manifold, _EMBEDDED):
        raise TypeError(
            f"{name} must be an isometrically embedded manifold for compute_likelihood "
            f"(Sphere, FlatTorus, Euclidean, SO3 or a ProductManifold of them), "
            f"got {type(manifold).__name__}"
        )


def divergence_exact(
    manifold: geoopt.Manifold, u: Tensor, x: Tensor, *, create_graph: bool = False
) -> Tensor:
    r"""$\mathrm{tr}(P_x J)$ with $D$ vector-Jacobian products ($D$ = ambient size of a point).

    Args:
        manifold: the manifold (its ``proju`` is $P_x$).
        u: the field at ``x``, shape ``[B, *point_shape]``, computed from ``x``.
        x: points with ``requires_grad``, shape ``[B, *point_shape]``.
        create_graph: keep the graph (for training through the likelihood).

    Returns:
        Divergences, shape ``[B]``.
    """
    flat_dim = x[0].numel()
    div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    if not u.requires_grad:  # a field that does not depend on x (e.g. constant on the torus)
        return div
    for i in range(flat_dim):
        e = torch.zeros_like(x).flatten(1)
        e[:, i] = 1.0
        pe = manifold.proju(x.detach(), e.view_as(x))
        (g,) = torch.autograd.grad(u, x, pe, retain_graph=True, create_graph=create_graph)
        div = div + g.flatten(1)[:, i]
    return div


def divergence_hutchinson(
    manifold: geoopt.Manifold, u: Tensor, x: Tensor, z: Tensor, *, create_graph: bool = False
) -> Tensor:
    r"""Unbiased estimate $\tilde z^\top J \tilde z$ with $\tilde z = P_x z$, $z \sim N(0, I)$.

    $E[\tilde z^\top J \tilde z] = \mathrm{tr}(P_x J P_x)$ because $E[zz^\top] = I$.

    Args:
        manifold: the manifold.
        u: the field at ``x``, shape ``[B, *point_shape]``.
        x: points with ``requires_grad``, shape ``[B, *point_shape]``.
        z: ambient Gaussian (or Rademacher) noise, shape of ``x``.
        create_graph: keep the graph.

    Returns:
        Divergence estimates, shape ``[B]``.
    """
    pz = manifold.proju(x.detach(), z)
    if not u.requires_grad:
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    (g,) = torch.autograd.grad(u, x, pz, retain_graph=True, create_graph=create_graph)
    return (g * pz).flatten(1).sum(1)
