r"""Butcher tableaux of the explicit Runge–Kutta methods, with their order.

One table per method serves every state space: the integrator combines stage velocities with
these coefficients and hands the combination to a *move* (``y + w`` in Euclidean space,
``projx(x + w)`` or ``expmap`` on a manifold; see ``fm_core.solver._moves``).

Coefficients are exact fractions so that a step coefficient is computed as ``h / 6`` rather than
``h * 0.1666…`` (the two differ in the last bit; the hand-written methods this table replaced used
``h / 6``, and sampling stays bit-identical to them).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as F

__all__ = ["DOPRI5", "EULER", "HEUN2", "MIDPOINT", "RK4_TABLEAU", "TABLEAUX", "Tableau"]


@dataclass(frozen=True)
class Tableau:
    r"""An explicit Runge–Kutta method $k_i = f(t + c_i h,\ y \oplus h\sum_{j<i} a_{ij} k_j)$,
    $y_{n+1} = y \oplus h \sum_i b_i k_i$.

    Attributes:
        name: the registry name (``method=name``).
        order: global order $p$: the error at a fixed time is $O(h^p)$.
        a: strictly lower-triangular stage coefficients, one row per stage (row 0 empty).
        b: weights.
        c: nodes.
        b_error: for embedded pairs, the weights of the solution minus those of the embedded
            lower-order one (the local error estimate); ``None`` for fixed-step methods.
    """

    name: str
    order: int
    a: tuple[tuple[F, ...], ...]
    b: tuple[F, ...]
    c: tuple[F, ...]
    b_error: tuple[F, ...] | None = None

    @property
    def stages(self) -> int:
        """Model evaluations per step (for FSAL pairs, the last stage is the next step's first)."""
        return len(self.b) - (1 if self.fsal else 0)

    @property
    def fsal(self) -> bool:
        """First same as last: the last stage is evaluated at the step's result."""
        return self.b_error is not None and self.a[-1] == self.b[:-1] and self.c[-1] == 1


def _t(*rows) -> tuple:
    return tuple(tuple(F(v) for v in row) for row in rows)


EULER = Tableau("euler", 1, a=_t([]), b=(F(1),), c=(F(0),))
MIDPOINT = Tableau("midpoint", 2, a=_t([], [F(1, 2)]), b=(F(0), F(1)), c=(F(0), F(1, 2)))
HEUN2 = Tableau("heun2", 2, a=_t([], [1]), b=(F(1, 2), F(1, 2)), c=(F(0), F(1)))
RK4_TABLEAU = Tableau(
    "rk4",
    4,
    a=_t([], [F(1, 2)], [0, F(1, 2)], [0, 0, 1]),
    b=(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
    c=(F(0), F(1, 2), F(1, 2), F(1)),
)
# Dormand & Prince (1980); the 7th stage is evaluated at the new point (FSAL).
_DP_B = (F(35, 384), F(0), F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), F(0))
_DP_B4 = (
    F(5179, 57600), F(0), F(7571, 16695), F(393, 640), F(-92097, 339200), F(187, 2100), F(1, 40),
)  # fmt: skip
DOPRI5 = Tableau(
    "dopri5",
    5,
    a=_t(
        [],
        [F(1, 5)],
        [F(3, 40), F(9, 40)],
        [F(44, 45), F(-56, 15), F(32, 9)],
        [F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)],
        [F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)],
        _DP_B[:6],
    ),
    b=_DP_B,
    c=(F(0), F(1, 5), F(3, 10), F(4, 5), F(8, 9), F(1), F(1)),
    b_error=tuple(x - y for x, y in zip(_DP_B, _DP_B4, strict=True)),
)

#: The tableaux of the methods implemented here, by name.
TABLEAUX: dict[str, Tableau] = {t.name: t for t in (EULER, MIDPOINT, HEUN2, RK4_TABLEAU, DOPRI5)}
