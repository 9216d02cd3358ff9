r"""Fixed-step explicit Runge–Kutta methods: Euler, midpoint, Heun and classic RK4.

Each method precomputes, once per solve and on the state's device, every time and step-size
coefficient it needs (``coefficients``), so that the step loop only calls the model and fused
``addcmul`` kernels: no host synchronisation and no scalar allocation per step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor

from fm_core.solver._state import State, axpy

__all__ = ["RK4", "Euler", "FixedStepMethod", "Heun2", "Midpoint"]

Dynamics = Callable[[Tensor, State], State]


class FixedStepMethod:
    r"""An explicit one-step method $y_{n+1} = y_n + h_n \Phi(t_n, y_n, h_n)$.

    Attributes:
        name: the registry name (``method=name``).
        order: global order of accuracy $p$: the error at a fixed time is $O(h^p)$.
        stages: model evaluations per step.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    stages: ClassVar[int]
    adaptive: ClassVar[bool] = False

    def coefficients(self, t: Tensor, dt: Tensor) -> list[tuple[Tensor, ...]]:
        """Per-step coefficients from step starts ``t`` and sizes ``dt`` (both shape ``[N]``).

        Returns a list of ``N`` tuples of 0-dim tensors, computed with a few vectorised ops.
        """
        columns = self._columns(t, dt)
        return list(zip(*(c.unbind() for c in columns), strict=True))

    def _columns(self, t: Tensor, dt: Tensor) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def step(self, f: Dynamics, y: State, c: tuple[Tensor, ...]) -> State:
        """Advance ``y`` by one step with the coefficients ``c`` of that step."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Euler(FixedStepMethod):
    r"""Forward Euler, order 1: $y_{n+1} = y_n + h f(t_n, y_n)$.

    Example:
        >>> ODESolver(lambda x, t: -x).sample(torch.ones(2, 3), step_size=0.1, method="euler")
        tensor([[0.3487, 0.3487, 0.3487],
                [0.3487, 0.3487, 0.3487]])
    """

    name = "euler"
    order = 1
    stages = 1

    def _columns(self, t, dt):
        return t, dt

    def step(self, f, y, c):
        t, dt = c
        return axpy(y, dt, f(t, y))


class Midpoint(FixedStepMethod):
    r"""Explicit midpoint, order 2: $y_{n+1} = y_n + h f(t_n + h/2, y_n + \tfrac h2 f(t_n, y_n))$."""

    name = "midpoint"
    order = 2
    stages = 2

    def _columns(self, t, dt):
        return t, dt, 0.5 * dt, t + 0.5 * dt

    def step(self, f, y, c):
        t, dt, half, t_mid = c
        k1 = f(t, y)
        return axpy(y, dt, f(t_mid, axpy(y, half, k1)))


class Heun2(FixedStepMethod):
    r"""Heun's method (explicit trapezoid), order 2.

    $k_1 = f(t_n, y_n)$, $k_2 = f(t_n + h, y_n + h k_1)$, $y_{n+1} = y_n + \tfrac h2 (k_1 + k_2)$.
    """

    name = "heun2"
    order = 2
    stages = 2

    def _columns(self, t, dt):
        return t, dt, 0.5 * dt, t + dt

    def step(self, f, y, c):
        t, dt, half, t_next = c
        k1 = f(t, y)
        k2 = f(t_next, axpy(y, dt, k1))
        return axpy(axpy(y, half, k1), half, k2)


class RK4(FixedStepMethod):
    r"""The classic fourth-order Runge–Kutta method, order 4 (4 evaluations per step).

    $y_{n+1} = y_n + \tfrac h6 (k_1 + 2k_2 + 2k_3 + k_4)$ with $k_2, k_3$ at $t_n + h/2$ and
    $k_4$ at $t_n + h$. (torchdiffeq's ``rk4`` is the 3/8-rule variant; both are order 4.)
    """

    name = "rk4"
    order = 4
    stages = 4

    def _columns(self, t, dt):
        return t, dt, 0.5 * dt, t + 0.5 * dt, t + dt, dt / 6, dt / 3

    def step(self, f, y, c):
        t, dt, half, t_mid, t_next, sixth, third = c
        k1 = f(t, y)
        k2 = f(t_mid, axpy(y, half, k1))
        k3 = f(t_mid, axpy(y, half, k2))
        k4 = f(t_next, axpy(y, dt, k3))
        return axpy(axpy(axpy(axpy(y, sixth, k1), third, k2), third, k3), sixth, k4)
