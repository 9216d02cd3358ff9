"""The flat torus $[0, 2\\pi)^D$ as a geoopt manifold."""

from __future__ import annotations

import math

import geoopt
import torch
from torch import Tensor

from fm_riemann.manifolds._safe import safe_norm

__all__ = ["FlatTorus"]

TWO_PI = 2.0 * math.pi


class FlatTorus(geoopt.Manifold):
    r"""The flat torus $\mathbb{T}^D = (\mathbb{R} / 2\pi\mathbb{Z})^D$, points as angles in $[0, 2\pi)$.

    The metric is the Euclidean one in the angle coordinates, so ``inner`` is the dot product
    over the last dimension, ``proju`` is the identity, $\exp_x(u) = (x + u) \bmod 2\pi$ and
    $\log_x(y) = ((y - x + \pi) \bmod 2\pi) - \pi \in [-\pi, \pi)$, the shortest signed angle.

    **Antipodes.** When an angle differs by exactly $\pi$ both ways round are shortest;
    ``logmap`` returns $-\pi$ for that coordinate. ``logmap(x, x) == 0`` and every operation has
    gradient 1 (or 0) almost everywhere, so nothing is NaN.

    Example:
        >>> import torch
        >>> torus = FlatTorus()
        >>> x = torch.tensor([[0.1, 6.2]])
        >>> torus.logmap(x, torch.tensor([[6.2, 0.1]]))  # wraps round
        tensor([[-0.1832,  0.1832]])
    """

    ndim = 1
    name = "FlatTorus"
    reversible = False

    def _check_point_on_manifold(self, x: Tensor, *, atol: float = 1e-5, rtol: float = 1e-5):
        ok = bool(((x >= -atol) & (x < TWO_PI + atol)).all())
        return ok, None if ok else f"angles must lie in [0, 2π), got range [{x.min()}, {x.max()}]"

    def _check_vector_on_tangent(self, x: Tensor, u: Tensor, *, atol=1e-5, rtol=1e-5):
        ok = bool(torch.isfinite(u).all())
        return ok, None if ok else "tangent vectors must be finite"

    def projx(self, x: Tensor) -> Tensor:
        """Wrap angles into $[0, 2\\pi)$ (shape ``[..., D]``)."""
        r = torch.remainder(x, TWO_PI)
        # remainder(-1e-9, 2π) rounds to exactly 2π in float32: keep the interval half-open.
        return torch.where(r >= TWO_PI, r - TWO_PI, r)

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        return u

    def egrad2rgrad(self, x: Tensor, u: Tensor) -> Tensor:
        return u

    def inner(self, x: Tensor, u: Tensor, v: Tensor | None = None, *, keepdim: bool = False):
        """$\\langle u, v\\rangle$ summed over the last dimension."""
        if v is None:
            v = u
        return (u * v).sum(dim=-1, keepdim=keepdim)

    def norm(self, x: Tensor, u: Tensor, *, keepdim: bool = False) -> Tensor:
        return self.inner(x, u, keepdim=keepdim).clamp_min(0).sqrt()

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        return self.projx(x + u)

    def retr(self, x: Tensor, u: Tensor) -> Tensor:
        return self.expmap(x, u)

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.remainder(y - x + math.pi, TWO_PI) - math.pi

    def geodesic_point_and_velocity(self, x: Tensor, y: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        r"""$\gamma(s) = (x + s\log_x y) \bmod 2\pi$ and $\gamma'(s) = \log_x y$ (``[..., D]``)."""
        u = self.logmap(x, y)
        return self.projx(x + s * u), u.expand_as(x) if u.shape != x.shape else u

    def dist(self, x: Tensor, y: Tensor, *, keepdim: bool = False) -> Tensor:
        return safe_norm(self.logmap(x, y), keepdim=keepdim)

    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        return v

    def random_uniform(self, *size, dtype=None, device=None) -> Tensor:
        """Uniform angles of shape ``size`` (density $(2\\pi)^{-D}$)."""
        return self.projx(torch.rand(*size, dtype=dtype, device=device) * TWO_PI)
