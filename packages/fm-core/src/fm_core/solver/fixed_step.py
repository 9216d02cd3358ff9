r"""Fixed-step explicit Runge–Kutta methods, each a Butcher tableau with its order.

``FixedStepMethod`` runs any tableau of ``fm_core.solver._tableau``; ``Euler``, ``Midpoint``,
``Heun2`` and ``RK4`` name the four the registry serves. Each method precomputes, once per solve
and on the state's device, every time and step-size coefficient it needs (``coefficients``), so
that the step loop only calls the model and the move (fused ``addcmul`` kernels in Euclidean
space): no host synchronisation and no scalar allocation per step.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import ClassVar

from torch import Tensor

from fm_core.solver._moves import Move, euclidean_move
from fm_core.solver._state import State
from fm_core.solver._tableau import EULER, HEUN2, MIDPOINT, RK4_TABLEAU, Tableau

__all__ = ["RK4", "Euler", "FixedStepMethod", "Heun2", "Midpoint"]

Dynamics = Callable[[Tensor, State], State]
# One step's coefficients: stage times, stage terms [(j, h a_ij)], weights [(j, h b_j)].
StepCoefficients = tuple[tuple[Tensor, ...], tuple[tuple[tuple[int, Tensor], ...], ...], tuple]


def _scaled(h: Tensor, f: Fraction) -> Tensor:
    """``h * f`` as ``h / q`` when ``f = 1/q`` (bit-identical to hand-written ``h / 6``)."""
    if f == 1:
        return h
    if f.numerator == 1:
        return h / f.denominator
    return h * f.numerator / f.denominator


class FixedStepMethod:
    r"""An explicit one-step method $y_{n+1} = y_n \oplus h_n \sum_i b_i k_i$ from a tableau.

    Attributes:
        tableau: the Butcher tableau (``a``, ``b``, ``c``, ``order``).
        name: the registry name (``method=name``).
        order: global order of accuracy $p$: the error at a fixed time is $O(h^p)$.
        stages: model evaluations per step.
    """

    tableau: ClassVar[Tableau]
    name: ClassVar[str]
    order: ClassVar[int]
    stages: ClassVar[int]
    adaptive: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "tableau" in cls.__dict__:
            cls.name, cls.order, cls.stages = (
                cls.tableau.name,
                cls.tableau.order,
                len(cls.tableau.b),
            )

    def coefficients(self, t: Tensor, dt: Tensor) -> list[StepCoefficients]:
        """Per-step coefficients from step starts ``t`` and sizes ``dt`` (both shape ``[N]``).

        Returns ``N`` entries of 0-dim tensors, computed with a few vectorised ops.
        """
        tab = self.tableau
        cache: dict[Fraction, list[Tensor]] = {}

        def col(f: Fraction) -> list[Tensor]:
            if f not in cache:
                cache[f] = list(_scaled(dt, f).unbind())
            return cache[f]

        steps = range(len(dt))
        ts = list(t.unbind())
        nodes = [ts if c == 0 else list((t + _scaled(dt, c)).unbind()) for c in tab.c]
        a = [[(j, col(f)) for j, f in enumerate(row) if f != 0] for row in tab.a]
        b = [(j, col(f)) for j, f in enumerate(tab.b) if f != 0]
        return [
            (
                tuple(n[i] for n in nodes),
                tuple(tuple((j, c[i]) for j, c in row) for row in a),
                tuple((j, c[i]) for j, c in b),
            )
            for i in steps
        ]

    def step(
        self, f: Dynamics, y: State, c: StepCoefficients, move: Move = euclidean_move
    ) -> State:
        """Advance ``y`` by one step with the coefficients ``c`` of that step."""
        times, stage_terms, weights = c
        ks: list[State] = []
        for t_i, terms in zip(times, stage_terms, strict=True):
            y_i = move(y, [(coef, ks[j]) for j, coef in terms]) if terms else y
            ks.append(f(t_i, y_i))
        return move(y, [(coef, ks[j]) for j, coef in weights])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Euler(FixedStepMethod):
    r"""Forward Euler, order 1: $y_{n+1} = y_n + h f(t_n, y_n)$.

    Example:
        >>> ODESolver(lambda x, t: -x).sample(torch.ones(2, 3), step_size=0.1, method="euler")
        tensor([[0.3487, 0.3487, 0.3487],
                [0.3487, 0.3487, 0.3487]])
    """

    tableau = EULER


class Midpoint(FixedStepMethod):
    r"""Explicit midpoint, order 2: $y_{n+1} = y_n + h f(t_n + h/2, y_n + \tfrac h2 f(t_n, y_n))$."""

    tableau = MIDPOINT


class Heun2(FixedStepMethod):
    r"""Heun's method (explicit trapezoid), order 2.

    $k_1 = f(t_n, y_n)$, $k_2 = f(t_n + h, y_n + h k_1)$, $y_{n+1} = y_n + \tfrac h2 (k_1 + k_2)$.
    """

    tableau = HEUN2


class RK4(FixedStepMethod):
    r"""The classic fourth-order Runge–Kutta method, order 4 (4 evaluations per step).

    $y_{n+1} = y_n + \tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4)$ with $k_2, k_3$ at $t_n + h/2$ and
    $k_4$ at $t_n + h$. (torchdiffeq's ``rk4`` is the 3/8-rule variant; both are order 4.)
    """

    tableau = RK4_TABLEAU
