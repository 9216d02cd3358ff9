r"""``Manifold``: the reference's small abstract base, as a geoopt manifold.

The reference's ``flow_matching.utils.manifolds.Manifold`` asks for four methods: ``expmap``,
``logmap``, ``projx`` and ``proju``. geoopt's ``Manifold`` asks for eight others too (``inner``,
``retr``, ``egrad2rgrad``, point and tangent checks), so a manifold written for the reference
could not be instantiated on geoopt's base. This base supplies them for a manifold embedded in
the ambient space of its points (as every manifold the reference ships is):

- ``inner``: the ambient dot product over the last ``ndim`` dimensions (the induced metric);
- ``retr``: ``expmap``; ``egrad2rgrad``: ``proju``; ``transp(x, y, v)``: ``proju(y, v)``;
- point and tangent checks: ``projx(x) == x`` and ``proju(x, u) == u`` within tolerance.

A subclass that knows better overrides any of them. It stays a ``geoopt.Manifold``, so geoopt's
``ProductManifold`` and ``check_point_on_manifold(..., explain=True)`` work with it.
"""

from __future__ import annotations

import abc

import geoopt
import torch
from torch import Tensor

__all__ = ["Manifold"]


class Manifold(geoopt.Manifold):
    r"""A manifold defined by ``expmap``, ``logmap``, ``projx`` and ``proju`` (the reference's base).

    Points are tensors ``[..., *point_shape]`` whose last ``ndim`` dimensions (class attribute,
    default 1) make one point; set ``ndim`` for matrix manifolds.

    Example:
        >>> import torch
        >>> class Circle(Manifold):  # the unit circle in R^2
        ...     def projx(self, x):
        ...         return x / x.norm(dim=-1, keepdim=True)
        ...     def proju(self, x, u):
        ...         return u - (u * x).sum(-1, keepdim=True) * x
        ...     def expmap(self, x, u):
        ...         n = u.norm(dim=-1, keepdim=True)
        ...         return x * torch.cos(n) + u * torch.sinc(n / torch.pi)
        ...     def logmap(self, x, y):
        ...         v = self.proju(x, y - x)
        ...         angle = torch.arccos((x * y).sum(-1, keepdim=True).clamp(-1, 1))
        ...         return v * angle / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        >>> circle = Circle()
        >>> x = torch.tensor([[1.0, 0.0]])
        >>> circle.logmap(x, torch.tensor([[0.0, 1.0]]))
        tensor([[0.0000, 1.5708]])
        >>> circle.check_point_on_manifold(torch.tensor([[0.6, 0.8]]))
        True
    """

    ndim = 1
    reversible = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    # ---------------------------------------------------------------- the four a subclass writes
    @abc.abstractmethod
    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        r"""$\exp_x(u)$: the point reached from ``x`` along the geodesic with initial velocity ``u``."""

    @abc.abstractmethod
    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        r"""$\log_x(y)$: the tangent vector at ``x`` whose ``expmap`` is ``y``."""

    @abc.abstractmethod
    def projx(self, x: Tensor) -> Tensor:
        """The point of the manifold nearest to the ambient point ``x``."""

    @abc.abstractmethod
    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """The projection of the ambient vector ``u`` onto the tangent space at ``x``."""

    # ---------------------------------------------------------------- defaults for geoopt's others
    def _dims(self) -> tuple[int, ...]:
        return tuple(range(-self.ndim, 0))

    def inner(self, x: Tensor, u: Tensor, v: Tensor | None = None, *, keepdim=False) -> Tensor:
        """The ambient dot product of tangent vectors ``u`` and ``v`` (``u`` with itself if ``None``)."""
        v = u if v is None else v
        out = (u * v).sum(dim=self._dims(), keepdim=keepdim)
        batch = x.shape[: x.ndim - self.ndim] + ((1,) * self.ndim if keepdim else ())
        return out.expand(torch.broadcast_shapes(out.shape, batch))

    def retr(self, x: Tensor, u: Tensor) -> Tensor:
        """``expmap`` (an exact retraction)."""
        return self.expmap(x, u)

    def egrad2rgrad(self, x: Tensor, u: Tensor) -> Tensor:
        """The Riemannian gradient of the induced metric: ``proju``."""
        return self.proju(x, u)

    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Vector transport by projection onto the tangent space at ``y``."""
        return self.proju(y, v)

    def _check_point_on_manifold(self, x: Tensor, *, atol=1e-5, rtol=1e-5):
        ok = torch.allclose(self.projx(x), x, atol=atol, rtol=rtol)
        return ok, None if ok else f"projx(x) != x (atol={atol}, rtol={rtol})"

    def _check_vector_on_tangent(self, x: Tensor, u: Tensor, *, atol=1e-5, rtol=1e-5):
        ok = torch.allclose(self.proju(x, u), u, atol=atol, rtol=rtol)
        return ok, None if ok else f"proju(x, u) != u (atol={atol}, rtol={rtol})"
