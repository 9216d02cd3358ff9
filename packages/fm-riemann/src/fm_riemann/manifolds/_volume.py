r"""The Riemannian volume of each supported manifold, for likelihoods: a tangent projection and
the log-volume density in the coordinates the points are stored in.

A manifold $M$ is stored as a set of points in $\mathbb{R}^D$ (a ball, a hyperboloid, matrices,
...), and the flow moves them by the coordinate velocity $u = \dot x$. Two measures live on $M$:
the Euclidean one $V_E$ (the $n$-dimensional area that $M$ has as a surface in $\mathbb{R}^D$,
Lebesgue measure for an open set of $\mathbb{R}^n$) and the Riemannian one $V_g$. Their ratio
$\rho = dV_g/dV_E$ is the *log-volume density* ``log_density`` $= \log\rho$. With
$P_x$ the Euclidean-orthogonal projection onto $T_xM$ (``project``) and
$J = \partial u/\partial x$,

$$\operatorname{div}_g u = \rho^{-1}\operatorname{div}_E(\rho\, u)
= \operatorname{tr}(P_x J) + \langle \nabla \log\rho, u \rangle,$$

the Euclidean (surface) divergence plus the *volume term* ``correction`` $= \frac{d}{dt}
\log\rho(x_t)$ along $\dot x_t = u$. In a chart with metric matrix $G$, $\rho \propto
\sqrt{\det G}$ and the volume term is $\tfrac12 \frac{d}{dt} \log\det G(x_t)$. Per manifold:

| manifold | $P_x$ | $\log\rho(x)$ | volume term |
|---|---|---|---|
| ``Sphere``, ``FlatTorus``, ``Euclidean``, ``SO3`` (isometrically embedded) | ``proju`` | $0$ | $0$ |
| ``Stereographic(k)``, ``PoincareBall(c)`` ($k = -c$): $G = \lambda_x^2 I$, $\lambda_x = 2/(1 + k\|x\|^2)$ | $I$ | $n \log\lambda_x$ | $-n k \lambda_x \langle x, u\rangle$ |
| ``Lorentz(k)``: $-x_0^2 + \|x_{1:}\|^2 = -k$ in Minkowski space | $I - \nu\nu^\top/\|\nu\|^2$, $\nu = (-x_0, x_{1:})$ | $\tfrac12\log k - \log\|x\|$ | $-\langle x, u\rangle / \|x\|^2$ |
| ``SymmetricPositiveDefinite`` (affine-invariant metric, $X$ of size $m$) | $\mathrm{sym}$ | $-\frac{m+1}{2}\log\det X$ | $-\frac{m+1}{2}\operatorname{tr}(X^{-1} U)$ |
| ``Scaled(base, s)`` | base's | base's $+\, n\log s$ | base's |
| ``ProductManifold`` | blockwise | sum over factors | sum over factors |

**Conformal models.** The ball and the stereographic models (both curvature signs) are open
subsets of $\mathbb{R}^n$ (all of it for $k \ge 0$, the sphere minus one point), with
$\sqrt{\det G} = \lambda_x^n$ and $\nabla\log\lambda_x = -k\lambda_x x$.

**The hyperboloid.** In the chart of spatial coordinates $y = x_{1:}$, $x_0 = \sqrt{k + \|y\|^2}$,
the Minkowski metric pulls back to $G_L = I - yy^\top/x_0^2$, $\det G_L = k/x_0^2$, and the
Euclidean one to $G_E = I + yy^\top/x_0^2$, $\det G_E = \|x\|^2/x_0^2$; hence
$\rho = \sqrt{\det G_L/\det G_E} = \sqrt k/\|x\|$. (Equivalently $\operatorname{div}_g u =
\operatorname{tr}(\Pi_x J)$ with the Minkowski-orthogonal projection
$\Pi_x v = v + \langle x, v\rangle_L\, x/k$ (geoopt's ``proju``) and no volume term: the
Levi-Civita connection of a spacelike hypersurface is the Minkowski-tangential part of the ambient
derivative. The tests check both agree; the Euclidean form is used because $P_x$ has norm 1,
while $\Pi_x$ grows like $\|x\|^2$ and would inflate Hutchinson's variance far from the origin.)

**SPD.** geoopt's default metric is the affine-invariant one, $\langle U, V\rangle_X =
\operatorname{tr}(X^{-1}UX^{-1}V)$ (``default_metric="AIM"``; the others are refused). On symmetric
matrices with the Frobenius-orthonormal Lebesgue measure, $U \mapsto X^{-1/2}UX^{-1/2}$ has
determinant $\det X^{-(m+1)/2}$ and the metric is Frobenius at $X = I$, so
$\rho = \det X^{-(m+1)/2}$ and $\frac{d}{dt}\log\det X_t = \operatorname{tr}(X^{-1}U)$. The
tangent space is all symmetric matrices; $P_X = \mathrm{sym}$ is orthogonal for Frobenius.

**Scaled.** ``geoopt.Scaled(base, s)`` multiplies distances by $s$, i.e. the metric by $s^2$ and
the volume by $s^n$: a constant, so the divergence is the base's and only $\log\rho$ shifts.
(geoopt keeps ``inner`` unscaled and writes a tangent vector as $s$ times the coordinate
velocity: ``expmap(x, u) = base.expmap(x, u / s)``. Flows here use the coordinate velocity.)

**Products.** Volumes multiply and divergences add, factor by factor.
"""

from __future__ import annotations

import math

import geoopt
import torch
from torch import Tensor

from fm_riemann.manifolds.euclidean import Euclidean
from fm_riemann.manifolds.so3 import SO3
from fm_riemann.manifolds.sphere import Sphere
from fm_riemann.manifolds.torus import FlatTorus

__all__ = ["Volume", "has_volume", "volume_of"]

_EMBEDDED = (Sphere, geoopt.Sphere, Euclidean, geoopt.Euclidean, FlatTorus, SO3)


def _reduce(x: Tensor, ndim: int) -> Tensor:
    return x.sum(dim=tuple(range(-ndim, 0))) if ndim else x


class Volume:
    r"""The Riemannian volume of one manifold, in the coordinates of its points.

    ``project(x, v)``: the Euclidean-orthogonal projection $P_x v$ onto $T_xM$ (``v`` may carry
    extra leading dimensions, e.g. a stack of probes ``[K, B, *point_shape]``).
    ``log_density(x)``: $\log dV_g/dV_E$ at ``x``, shape ``x.shape[:-ndim]``.
    ``correction(x, u)``: $\langle\nabla\log\rho(x), u\rangle$, the volume term added to
    $\operatorname{tr}(P_x\,\partial u/\partial x)$ to give $\operatorname{div}_g u$.
    ``dim``: the manifold's dimension $n$ (for points of shape ``point_shape``).
    """

    ndim: int = 1

    def project(self, x: Tensor, v: Tensor) -> Tensor:
        raise NotImplementedError

    def log_density(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def correction(self, x: Tensor, u: Tensor) -> Tensor:
        raise NotImplementedError

    def dim(self, point_shape: tuple[int, ...]) -> int:
        raise NotImplementedError


class _Embedded(Volume):
    """Isometrically embedded: the metric is the ambient dot product, ``proju`` is orthogonal."""

    def __init__(self, manifold: geoopt.Manifold):
        self.manifold = manifold
        self.ndim = int(manifold.ndim)

    def project(self, x: Tensor, v: Tensor) -> Tensor:
        return self.manifold.proju(x, v)

    def log_density(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[: x.ndim - self.ndim])

    def correction(self, x: Tensor, u: Tensor) -> Tensor:
        return x.new_zeros(x.shape[: x.ndim - self.ndim])

    def dim(self, point_shape: tuple[int, ...]) -> int:
        m = self.manifold
        if isinstance(m, SO3):
            return 3
        if isinstance(m, (FlatTorus, Euclidean, geoopt.Euclidean)):
            return math.prod(point_shape)
        if type(m) in (Sphere, geoopt.Sphere, geoopt.SphereExact):
            return point_shape[-1] - 1
        # A sphere intersected with a subspace: the rank of the (orthogonal) projection.
        x = m.projx(torch.randn(point_shape, dtype=torch.float64))
        eye = torch.eye(math.prod(point_shape), dtype=torch.float64).view(-1, *point_shape)
        return round(m.proju(x, eye).flatten(1).diagonal().sum().item())


class _Conformal(Volume):
    r"""Stereographic models (PoincareBall included): $G = \lambda_x^2 I$, $\lambda_x = 2/(1 + k|x|^2)$."""

    def __init__(self, manifold: geoopt.Stereographic):
        self.manifold = manifold

    def _k(self, x: Tensor) -> Tensor:
        return self.manifold.k.to(dtype=x.dtype, device=x.device)

    def project(self, x: Tensor, v: Tensor) -> Tensor:
        return v

    def log_density(self, x: Tensor) -> Tensor:
        lam = 2 / (1 + self._k(x) * x.pow(2).sum(-1))
        return x.shape[-1] * lam.log()

    def correction(self, x: Tensor, u: Tensor) -> Tensor:
        k = self._k(x)
        lam = 2 / (1 + k * x.pow(2).sum(-1))
        return -x.shape[-1] * k * lam * (x * u).sum(-1)

    def dim(self, point_shape: tuple[int, ...]) -> int:
        return point_shape[-1]


class _Hyperboloid(Volume):
    r"""Lorentz model $\{x : -x_0^2 + |x_{1:}|^2 = -k\}$: $\rho = \sqrt{k}/|x|$ (Euclidean norm)."""

    def __init__(self, manifold: geoopt.Lorentz):
        self.manifold = manifold

    def project(self, x: Tensor, v: Tensor) -> Tensor:
        normal = torch.cat([-x[..., :1], x[..., 1:]], dim=-1)  # Euclidean normal of the hyperboloid
        return v - normal * ((normal * v).sum(-1, keepdim=True) / normal.pow(2).sum(-1, True))

    def log_density(self, x: Tensor) -> Tensor:
        k = self.manifold.k.to(dtype=x.dtype, device=x.device)
        return 0.5 * k.log() - 0.5 * x.pow(2).sum(-1).log()

    def correction(self, x: Tensor, u: Tensor) -> Tensor:
        return -(x * u).sum(-1) / x.pow(2).sum(-1)

    def dim(self, point_shape: tuple[int, ...]) -> int:
        return point_shape[-1] - 1


class _SPD(Volume):
    r"""SPD matrices, affine-invariant metric: $\rho = \det X^{-(m+1)/2}$ on symmetric matrices."""

    ndim = 2

    def project(self, x: Tensor, v: Tensor) -> Tensor:
        return 0.5 * (v + v.transpose(-1, -2))

    def log_density(self, x: Tensor) -> Tensor:
        return -0.5 * (x.shape[-1] + 1) * torch.logdet(x)

    def correction(self, x: Tensor, u: Tensor) -> Tensor:
        x_inv_u = torch.linalg.solve(x, u)
        return -0.5 * (x.shape[-1] + 1) * x_inv_u.diagonal(dim1=-2, dim2=-1).sum(-1)

    def dim(self, point_shape: tuple[int, ...]) -> int:
        m = point_shape[-1]
        return m * (m + 1) // 2


class _Scaled(Volume):
    """``geoopt.Scaled(base, s)``: the base's projection and volume term; volume times $s^n$."""

    def __init__(self, manifold: geoopt.Scaled, base: Volume):
        self.manifold, self.base = manifold, base
        self.ndim = base.ndim

    def project(self, x: Tensor, v: Tensor) -> Tensor:
        return self.base.project(x, v)

    def log_density(self, x: Tensor) -> Tensor:
        n = self.base.dim(tuple(x.shape[x.ndim - self.ndim :]))
        log_s = self.manifold.log_scale.to(dtype=x.dtype, device=x.device)
        return self.base.log_density(x) + n * log_s

    def correction(self, x: Tensor, u: Tensor) -> Tensor:
        return self.base.correction(x, u)

    def dim(self, point_shape: tuple[int, ...]) -> int:
        return self.base.dim(point_shape)


class _Product(Volume):
    """``geoopt.ProductManifold``: points flattened and concatenated; blockwise, volumes multiply."""

    def __init__(self, manifold: geoopt.ProductManifold, factors: list[Volume]):
        self.manifold, self.factors = manifold, factors

    def _parts(self, x: Tensor):
        for i, vol in enumerate(self.factors):
            yield vol, self.manifold.take_submanifold_value(x, i)

    def project(self, x: Tensor, v: Tensor) -> Tensor:
        out = []
        for i, (vol, xi) in enumerate(self._parts(x)):
            vi = self.manifold.take_submanifold_value(v, i)
            out.append(vol.project(xi, vi).flatten(vi.ndim - vol.ndim))
        return torch.cat(out, dim=-1)

    def log_density(self, x: Tensor) -> Tensor:
        return sum(vol.log_density(xi) for vol, xi in self._parts(x))

    def correction(self, x: Tensor, u: Tensor) -> Tensor:
        total = 0
        for i, (vol, xi) in enumerate(self._parts(x)):
            total = total + vol.correction(xi, self.manifold.take_submanifold_value(u, i))
        return total

    def dim(self, point_shape: tuple[int, ...]) -> int:
        return sum(vol.dim(tuple(s)) for vol, s in zip(self.factors, self.manifold.shapes))


def volume_of(manifold: object, name: str = "manifold") -> Volume:
    """The ``Volume`` of ``manifold``, or ``TypeError`` naming ``name`` if it has none here.

    Supported: ``Sphere`` (ours and geoopt's), ``FlatTorus``, ``Euclidean`` (ours and geoopt's),
    ``SO3``, geoopt's ``Stereographic`` (``PoincareBall``, ``SphereProjection``, any curvature),
    ``Lorentz``, ``SymmetricPositiveDefinite`` (affine-invariant metric), ``Scaled`` of any of
    these, and ``ProductManifold`` of any of these.
    """
    if isinstance(manifold, geoopt.ProductManifold):
        factors = [volume_of(m, f"{name}.manifolds[{i}]") for i, m in enumerate(manifold.manifolds)]
        return _Product(manifold, factors)
    if isinstance(manifold, geoopt.Scaled):
        return _Scaled(manifold, volume_of(manifold.base, f"{name}.base"))
    if isinstance(manifold, _EMBEDDED):
        return _Embedded(manifold)
    if isinstance(manifold, geoopt.Stereographic):
        return _Conformal(manifold)
    if isinstance(manifold, geoopt.Lorentz):
        return _Hyperboloid(manifold)
    if isinstance(manifold, geoopt.SymmetricPositiveDefinite):
        metric = getattr(manifold.default_metric, "value", manifold.default_metric)
        if metric != "AIM":
            raise TypeError(
                f"{name} must use the affine-invariant metric (default_metric='AIM') for "
                f"likelihoods, got default_metric={metric!r}"
            )
        return _SPD()
    raise TypeError(
        f"{name} has no Riemannian volume for likelihoods: expected Sphere, FlatTorus, Euclidean, "
        f"SO3, PoincareBall, Stereographic, Lorentz, SymmetricPositiveDefinite, Scaled or a "
        f"ProductManifold of them, got {type(manifold).__name__}"
    )


def has_volume(manifold: object) -> bool:
    """Whether ``volume_of(manifold)`` succeeds."""
    try:
        volume_of(manifold)
    except TypeError:
        return False
    return True
