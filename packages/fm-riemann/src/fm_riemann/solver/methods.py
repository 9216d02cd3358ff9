"""Explicit Runge-Kutta methods on manifolds, as Butcher tableaux with their order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

__all__ = ["METHODS", "RungeKutta", "rk_step"]

# move(x, w): the point reached from x by the ambient increment w (projx(x + w) or exp_x(P_x w)).
Move = Callable[[Tensor, Tensor], Tensor]
# field(x, t) -> (velocity, extra): extra is the divergence for likelihoods, else None.
Field = Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]]


@dataclass(frozen=True)
class RungeKutta:
    """An explicit Runge-Kutta method: stage coefficients ``a``, weights ``b``, nodes ``c``, order."""

    name: str
    order: int
    a: Sequence[Sequence[float]]
    b: Sequence[float]
    c: Sequence[float]


METHODS: dict[str, RungeKutta] = {
    "euler": RungeKutta("euler", 1, a=[[]], b=[1.0], c=[0.0]),
    "midpoint": RungeKutta("midpoint", 2, a=[[], [0.5]], b=[0.0, 1.0], c=[0.0, 0.5]),
    "rk4": RungeKutta(
        "rk4",
        4,
        a=[[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]],
        b=[1 / 6, 1 / 3, 1 / 3, 1 / 6],
        c=[0.0, 0.5, 0.5, 1.0],
    ),
}


def _combine(coeffs: Sequence[float], ks: Sequence[Tensor]) -> Tensor | None:
    out = None
    for c, k in zip(coeffs, ks):
        if c != 0.0:
            out = c * k if out is None else out + c * k
    return out


def rk_step(
    method: RungeKutta, field: Field, move: Move, x: Tensor, t: Tensor, dt: Tensor
) -> tuple[Tensor, Tensor | None]:
    """One step of ``method`` from ``(x, t)`` over ``dt`` (may be negative).

    Each stage point is ``move(x, dt * sum_j a_ij k_j)``; the result is
    ``move(x, dt * sum_i b_i k_i)`` and, when ``field`` returns extras (divergences),
    ``dt * sum_i b_i extra_i`` (the change of the integral of the extra along the step).
    """
    ks: list[Tensor] = []
    extras: list[Tensor | None] = []
    for a_i, c_i in zip(method.a, method.c):
        inc = _combine(a_i, ks)
        x_i = x if inc is None else move(x, dt * inc)
        k, e = field(x_i, t + c_i * dt)
        ks.append(k)
        extras.append(e)
    x_next = move(x, dt * _combine(method.b, ks))
    if extras[0] is None:
        return x_next, None
    return x_next, dt * _combine(method.b, extras)
