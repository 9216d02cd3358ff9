r"""Moves: how a state advances by a combination of stage velocities, $y \oplus \sum_j c_j k_j$.

A solver state is a tuple of tensors (``(x,)``, or ``(x, log_det)`` for likelihoods). The
integrator never adds to a state itself: it calls a move with the terms ``[(c_j, k_j), ...]``
(``c_j`` a 0-dim tensor or a Python float, ``k_j`` a state of velocities). In Euclidean space the
move is ``y + sum c_j k_j`` (one fused ``addcmul`` per term, no host synchronisation); on a
manifold the point moves by ``projx(x + w)`` or ``expmap_x(P_x w)`` and the other components
(log-determinants) add as in Euclidean space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fm_core.solver._state import State

__all__ = ["Move", "Terms", "combine", "euclidean_move", "manifold_move"]

Terms = Sequence[tuple[Tensor | float, State]]
Move = Callable[[State, Terms], State]


def _add(y: Tensor, c: Tensor | float, k: Tensor) -> Tensor:
    if isinstance(c, Tensor):
        return torch.addcmul(y, c, k)
    return torch.add(y, k, alpha=c)


def euclidean_move(y: State, terms: Terms) -> State:
    """``y + sum_j c_j k_j`` componentwise, the terms in order (zero float coefficients skipped)."""
    out = list(y)
    for c, k in terms:
        if isinstance(c, float) and c == 0.0:
            continue
        out = [_add(o, c, ki) for o, ki in zip(out, k, strict=True)]
    return tuple(out)


def combine(terms: Terms, index: int = 0) -> Tensor:
    """``sum_j c_j k_j[index]``: the increment of one component (for moves that are not ``+``)."""
    out = None
    for c, k in terms:
        out = c * k[index] if out is None else _add(out, c, k[index])
    return out


def manifold_move(manifold, step_by: str = "projx", projx: bool = True) -> Move:
    r"""The move of a manifold point (state component 0); other components add.

    Args:
        manifold: a geoopt-style manifold (``projx``, ``proju``, ``expmap``).
        step_by: ``"projx"``: $x \leftarrow \mathrm{projx}(x + w)$ (just $x + w$ with
            ``projx=False``); ``"expmap"``: $x \leftarrow \exp_x(P_x w)$.
        projx: project after each move (``step_by="projx"`` only).
    """
    if step_by == "expmap":
        point = lambda x, w: manifold.expmap(x, manifold.proju(x, w))
    elif step_by != "projx":
        raise ValueError(f"step_by must be 'projx' or 'expmap', got {step_by!r}")
    elif projx:
        point = lambda x, w: manifold.projx(x + w)
    else:
        point = lambda x, w: x + w

    def move(y: State, terms: Terms) -> State:
        if not terms:
            return y
        x = point(y[0], combine(terms, 0))
        rest = euclidean_move(y[1:], [(c, k[1:]) for c, k in terms]) if len(y) > 1 else ()
        return (x, *rest)

    return move
