r"""Divergence of a velocity field, $\nabla\cdot u(x) = \operatorname{tr} \partial u / \partial x$.

Both estimators run one forward pass and one *batched* backward pass
(``torch.autograd.grad(..., is_grads_batched=True)``, i.e. ``vmap`` over vector-Jacobian
products) for ``x`` of any shape ``[B, ...]``; the reference loops one backward pass per
dimension. They assume the model treats samples independently (no batch-norm in train mode).

On a manifold embedded in the space of its points, pass ``project(x, v)`` (the manifold's
``proju``, the orthogonal projection $P_x$ onto the tangent space): the cotangents are projected
first, giving the Riemannian divergence of a tangent field,
$\mathrm{div}_M u = \operatorname{tr}(P_x\, \partial u/\partial x)$, still in one batched pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Project = Callable[[Tensor, Tensor], Tensor]

__all__ = ["Divergence", "ExactDivergence", "HutchinsonDivergence"]

# Elements of cotangents (and hence of the batched gradient) per chunk: 2**24 fp32 is 64 MiB.
_CHUNK_ELEMENTS = 2**24


@dataclass(frozen=True)
class Divergence:
    """How a likelihood computes the divergence: one object for ``divergence=``.

    Every likelihood entry point of the ODE solvers (``sample(return_log_prob=True)``,
    ``compute_likelihood``, ``sample_with_likelihood``, ``log_prob``; Euclidean and Riemannian)
    takes ``divergence=Divergence(...)`` in place of the keywords ``divergence``,
    ``num_probes``, ``probe`` and ``divergence_chunk_size``, so a setting can be written once and
    passed around. The keywords stay (the reference's names); giving both is an error (a keyword
    passed at its default value, e.g. ``num_probes=1``, cannot be told from an absent one and is
    ignored).

    Args:
        kind: ``"exact"`` (the trace from $D$ vector-Jacobian products) or ``"hutchinson"``
            (unbiased, ``num_probes`` products).
        num_probes: Hutchinson probes, drawn once and reused at every step.
        probe: ``"rademacher"`` or ``"gaussian"`` (Hutchinson).
        chunk_size: basis vectors per batched backward pass of the exact divergence
            (``None``: a memory-bounded default).

    Raises:
        ValueError: a field outside the values above, at construction.

    Example:
        >>> Divergence("hutchinson", num_probes=4)
        Divergence(kind='hutchinson', num_probes=4, probe='rademacher', chunk_size=None)
    """

    kind: str = "exact"
    num_probes: int = 1
    probe: str = "rademacher"
    chunk_size: int | None = None

    def __post_init__(self):
        if self.kind not in ("exact", "hutchinson"):
            raise ValueError(f"Divergence.kind must be 'exact' or 'hutchinson', got {self.kind!r}")
        n = self.num_probes
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"Divergence.num_probes must be a positive int, got {n!r}")
        if self.probe not in ("rademacher", "gaussian"):
            raise ValueError(
                f"Divergence.probe must be 'rademacher' or 'gaussian', got {self.probe!r}"
            )
        c = self.chunk_size
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise ValueError(f"Divergence.chunk_size must be None or a positive int, got {c!r}")


def resolve_divergence(
    divergence: str | Divergence, num_probes: int, probe: str, chunk_size: int | None
) -> tuple[str, int, str, int | None]:
    """``(kind, num_probes, probe, chunk_size)`` from a ``Divergence`` or the separate keywords."""
    if not isinstance(divergence, Divergence):
        return divergence, num_probes, probe, chunk_size
    if (num_probes, probe, chunk_size) != (1, "rademacher", None):
        raise ValueError(
            "divergence is a Divergence object: give num_probes, probe and "
            "divergence_chunk_size in it, not as keywords"
        )
    d = divergence
    return d.kind, d.num_probes, d.probe, d.chunk_size


class ExactDivergence:
    r"""The exact trace of the Jacobian: $\sum_i e_i^\top (\partial u/\partial x)^\top e_i$.

    The $D$ basis cotangents are processed ``chunk_size`` at a time, so the memory is about
    ``chunk_size * B * D`` elements (plus the model's own activations times ``chunk_size`` in
    the backward pass).

    Args:
        x: a state of the shape to be used, ``[B, ...]`` (only its shape, dtype, device are read).
        chunk_size: basis vectors per batched backward pass; default: as many as keep
            ``chunk_size * B * D`` under $2^{24}$ elements.
        project: optional tangent projection ``project(x, v) -> P_x v`` (see the module
            docstring); the basis is then projected per sample (``chunk_size * B * D`` elements).

    Example:
        >>> x = torch.randn(4, 3, requires_grad=True)
        >>> div = ExactDivergence(x)
        >>> div(2 * x, x)  # u(x) = 2x: divergence 2 D = 6
        tensor([6., 6., 6., 6.])
    """

    def __init__(self, x: Tensor, chunk_size: int | None = None, project: Project | None = None):
        batch, dim = x.shape[0], math.prod(x.shape[1:])
        if chunk_size is None:
            chunk_size = max(1, min(dim, _CHUNK_ELEMENTS // max(1, batch * dim)))
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"divergence_chunk_size must be a positive int, got {chunk_size!r}")
        self.shape, self.dim, self.chunk_size = tuple(x.shape), dim, chunk_size
        self.dtype, self.device = x.dtype, x.device
        self.project = project
        starts = range(0, dim, chunk_size)
        self._bounds = [(s, min(s + chunk_size, dim)) for s in starts]
        # One-hot rows, broadcast over the batch by a stride-0 expand (no B-fold copy); built once
        # per solve when the D x D identity is small, otherwise one chunk at a time.
        self._cached = (
            [self._basis(s, e) for s, e in self._bounds] if dim * dim <= _CHUNK_ELEMENTS else None
        )

    def _basis(self, start: int, end: int) -> Tensor:
        rows = torch.zeros(end - start, self.dim, dtype=self.dtype, device=self.device)
        rows[torch.arange(end - start), torch.arange(start, end)] = 1
        return rows.view(end - start, 1, *self.shape[1:]).expand(end - start, *self.shape)

    def __call__(self, u: Tensor, x: Tensor, create_graph: bool = False) -> Tensor:
        """Return the divergence, shape ``[B]``, of ``u`` (computed from ``x`` with grad on)."""
        if not u.requires_grad:
            raise ValueError(
                "u must be computed from x with autograd on (u.requires_grad is False); a field "
                "that does not depend on x has divergence 0"
            )
        total = None
        last = len(self._bounds) - 1
        for i, (s, e) in enumerate(self._bounds):
            basis = self._cached[i] if self._cached is not None else self._basis(s, e)
            if self.project is not None:
                basis = _project(self.project, x, basis)
            (g,) = torch.autograd.grad(
                u, x, basis, retain_graph=create_graph or i < last,
                create_graph=create_graph, is_grads_batched=True,
            )  # fmt: skip
            g = g.reshape(e - s, x.shape[0], self.dim)
            part = g[torch.arange(e - s, device=g.device), :, torch.arange(s, e, device=g.device)]
            part = part.sum(0)
            total = part if total is None else total + part
        return total


class HutchinsonDivergence:
    r"""Hutchinson's unbiased estimate $\frac1K \sum_{k=1}^K z_k^\top (\partial u/\partial x) z_k$.

    The $K$ probes $z_k$ (Rademacher $\pm1$ or standard Gaussian, $\mathbb E[z z^\top] = I$) are
    drawn once per solve and reused at every step, so the integrated estimate is the log-density of
    one consistent ODE; its variance falls as $1/K$ (Rademacher has the lower variance).

    Args:
        x: a state of the shape to be used, ``[B, ...]``.
        num_probes: $K \ge 1$.
        probe: ``"rademacher"`` or ``"gaussian"``.
        generator: optional ``torch.Generator`` for the probes.
        project: optional tangent projection ``project(x, v) -> P_x v``: the probes are projected
            at each evaluation, $\tilde z = P_x z$, so the estimate is of
            $\operatorname{tr}(P_x J P_x)$ (for $E[zz^\top] = I$).

    Example:
        >>> x = torch.randn(4, 3, requires_grad=True)
        >>> div = HutchinsonDivergence(x, num_probes=4)
        >>> div(2 * x, x)  # exact here: Rademacher probes and a diagonal Jacobian
        tensor([6., 6., 6., 6.])
    """

    def __init__(
        self,
        x: Tensor,
        num_probes: int = 1,
        probe: str = "rademacher",
        generator: torch.Generator | None = None,
        project: Project | None = None,
    ):
        self.project = project
        if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
            raise ValueError(f"num_probes must be a positive int, got {num_probes!r}")
        shape = (num_probes, *x.shape)
        if probe == "rademacher":
            z = torch.randint(0, 2, shape, generator=generator, device=x.device).to(x.dtype)
            self.probes = 2 * z - 1
        elif probe == "gaussian":
            self.probes = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
        else:
            raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")

    def __call__(self, u: Tensor, x: Tensor, create_graph: bool = False) -> Tensor:
        """Return the estimate, shape ``[B]``, of the divergence of ``u`` with respect to ``x``."""
        if not u.requires_grad:
            raise ValueError(
                "u must be computed from x with autograd on (u.requires_grad is False); a field "
                "that does not depend on x has divergence 0"
            )
        probes = self.probes if self.project is None else _project(self.project, x, self.probes)
        (g,) = torch.autograd.grad(
            u, x, probes, retain_graph=create_graph, create_graph=create_graph,
            is_grads_batched=True,
        )  # fmt: skip
        return (g * probes).flatten(2).sum(-1).mean(0)


def _project(project: Project, x: Tensor, v: Tensor) -> Tensor:
    """``project`` applied to a stack of vectors ``v`` ``[K, B, ...]`` at the points ``x`` ``[B, ...]``."""
    k = v.shape[0]
    xs = x.detach().unsqueeze(0).expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])
    return project(xs, v.reshape(xs.shape)).reshape(v.shape)
