"""Convex schedulers: $\\alpha_t = \\kappa_t$, $\\sigma_t = 1 - \\kappa_t$."""

from __future__ import annotations

import torch
from torch import Tensor

from fm_core.path.scheduler.scheduler import ConvexScheduler, SchedulerOutput
from fm_core.utils.checks import check_floating

__all__ = ["CondOTScheduler", "PolynomialConvexScheduler"]


class CondOTScheduler(ConvexScheduler):
    r"""The conditional optimal-transport schedule $\kappa_t = t$.

    $\alpha_t = t$, $\sigma_t = 1 - t$, $\dot\alpha_t = 1$, $\dot\sigma_t = -1$: straight lines
    from $x_0$ to $x_1$ at constant speed.

    Example:
        >>> CondOTScheduler()(torch.tensor([0.25])).sigma_t
        tensor([0.7500])
    """

    def _evaluate(self, t: Tensor) -> SchedulerOutput:
        return SchedulerOutput(
            alpha_t=t, sigma_t=1.0 - t, d_alpha_t=torch.ones_like(t), d_sigma_t=-torch.ones_like(t)
        )

    def kappa_inverse(self, kappa: Tensor) -> Tensor:
        check_floating(kappa, "kappa")
        return kappa.clone()


class PolynomialConvexScheduler(ConvexScheduler):
    r"""The polynomial schedule $\kappa_t = t^n$.

    $\dot\kappa_t = n t^{n-1}$. For $n < 1$ this derivative diverges at $t = 0$; it is evaluated
    at $\max(t, \epsilon)$ with $\epsilon$ = ``eps`` so that it stays finite on $[0, 1]$.

    Args:
        n: the exponent, a positive number.
        eps: the guard for $n < 1$ (default ``1e-6``).

    Example:
        >>> PolynomialConvexScheduler(2)(torch.tensor([0.5])).alpha_t
        tensor([0.2500])
    """

    def __init__(self, n: float | int, *, eps: float = 1e-6) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not n > 0:
            raise ValueError(f"n must be a positive number, got {n!r}")
        self.n = float(n)
        self.eps = eps

    def _evaluate(self, t: Tensor) -> SchedulerOutput:
        n = self.n
        kappa = t.pow(n)
        t_d = t.clamp_min(self.eps) if n < 1 else t
        d_kappa = n * t_d.pow(n - 1.0)
        return SchedulerOutput(
            alpha_t=kappa, sigma_t=1.0 - kappa, d_alpha_t=d_kappa, d_sigma_t=-d_kappa
        )

    def kappa_inverse(self, kappa: Tensor) -> Tensor:
        check_floating(kappa, "kappa")
        return kappa.pow(1.0 / self.n)

    def __repr__(self) -> str:
        return f"PolynomialConvexScheduler(n={self.n:g})"
