"""Scheduler interfaces: ``(alpha_t, sigma_t)`` and their time derivatives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from fm_core.utils.checks import check_floating

__all__ = ["ConvexScheduler", "Scheduler", "SchedulerOutput"]


@dataclass
class SchedulerOutput:
    r"""Scheduler values at times ``t``; every field has the shape of ``t``.

    Attributes:
        alpha_t: coefficient of the target, $\alpha_t$.
        sigma_t: coefficient of the source, $\sigma_t$.
        d_alpha_t: $\dot\alpha_t = d\alpha_t/dt$.
        d_sigma_t: $\dot\sigma_t = d\sigma_t/dt$.
    """

    alpha_t: Tensor
    sigma_t: Tensor
    d_alpha_t: Tensor
    d_sigma_t: Tensor


class Scheduler(ABC):
    r"""A schedule $(\alpha_t, \sigma_t)$ for $t \in [0, 1]$ with $\alpha_1 = 1$, $\sigma_1 = 0$.

    An affine path built on it is $x_t = \sigma_t x_0 + \alpha_t x_1$. The signal-to-noise ratio
    $\mathrm{snr}(t) = \alpha_t / \sigma_t$ increases with $t$.
    """

    def __call__(self, t: Tensor) -> SchedulerOutput:
        """Evaluate the schedule at times ``t`` (a floating tensor of any shape)."""
        check_floating(t, "t")
        return self._evaluate(t)

    @abstractmethod
    def _evaluate(self, t: Tensor) -> SchedulerOutput: ...

    @abstractmethod
    def snr_inverse(self, snr: Tensor) -> Tensor:
        r"""Return $t$ with $\alpha_t / \sigma_t = \mathrm{snr}$ (``snr`` may be ``inf``, giving 1)."""


class ConvexScheduler(Scheduler):
    r"""A convex schedule: $\sigma_t = 1 - \kappa_t$, $\alpha_t = \kappa_t$, $\kappa_0=0$, $\kappa_1=1$.

    Convex schedulers serve all three kinds of path: affine (Euclidean), mixture (discrete)
    and geodesic (Riemannian).
    """

    @abstractmethod
    def kappa_inverse(self, kappa: Tensor) -> Tensor:
        r"""Return $t$ with $\kappa_t = \kappa$."""

    def snr_inverse(self, snr: Tensor) -> Tensor:
        r"""Return $t$ with $\kappa_t / (1 - \kappa_t) = \mathrm{snr}$.

        Uses $\kappa = 1 / (1 + 1/\mathrm{snr})$, so ``snr = inf`` gives $t = 1$ and ``snr = 0``
        gives $t = 0$ without NaN.
        """
        check_floating(snr, "snr")
        kappa = torch.reciprocal(1.0 + torch.reciprocal(snr))
        return self.kappa_inverse(kappa)
