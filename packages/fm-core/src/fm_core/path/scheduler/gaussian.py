"""Variance-preserving and trigonometric schedulers (Gaussian-source paths)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fm_core.path.scheduler.scheduler import Scheduler, SchedulerOutput
from fm_core.utils.checks import check_floating, check_open_unit

__all__ = ["CosineScheduler", "LinearVPScheduler", "VPScheduler"]

_DEFAULT_EPS = 1e-5


def _with_time_derivative(value: Tensor, t: Tensor, derivative: Tensor) -> Tensor:
    r"""``value`` whose autograd derivative in ``t`` is ``derivative`` (the guarded $\dot\sigma_t$).

    $\sigma_t \sim \sqrt{1-t}$ has an infinite slope at $t = 1$, and autograd through the sqrt
    gives NaN there ($\infty \cdot 0$). The value stays exact; the gradient is the scheduler's own
    ``d_sigma_t``, exact below $1 - \epsilon$ and guarded above, finite on all of $[0, 1]$.
    This holds for first-order reverse mode (``backward``, ``autograd.grad``) only: a second
    derivative through it is not $\ddot\sigma_t$, and forward mode (``torch.func.jvp``) sees
    the plain sqrt.
    """
    if not t.requires_grad:
        return value
    return value.detach() + (t - t.detach()) * derivative


class VPScheduler(Scheduler):
    r"""The variance-preserving schedule of score-based diffusion (Song et al., 2021), in FM time.

    With $b = \beta_{\min}$, $B = \beta_{\max}$, $u = 1 - t$ and
    $T(t) = \tfrac12 u^2 (B - b) + u b$:
    $\alpha_t = e^{-T/2}$, $\sigma_t = \sqrt{1 - e^{-T}}$, so $\alpha_t^2 + \sigma_t^2 = 1$.

    **End point.** $\dot\sigma_t \sim -\tfrac12\sqrt{b/(1-t)}$ diverges at $t = 1$. The derivatives
    are evaluated at $\min(t, 1 - \epsilon)$ with $\epsilon$ = ``eps`` (default ``1e-5``), which keeps
    them finite on $[0, 1]$ ($|\dot\sigma_1| \approx 50$ with the defaults). $\alpha_t$ and
    $\sigma_t$ themselves are exact, with $\sigma_1 = 0$. Note $\alpha_0 = e^{-T(0)/2} > 0$: the
    source end is only approximately pure noise ($\alpha_0 \approx 0.0066$ with the defaults).

    Args:
        beta_min: $\beta_{\min} > 0$ (default 0.1).
        beta_max: $\beta_{\max} > \beta_{\min}$ (default 20.0).
        eps: the end-point guard for the derivatives, in $(0, 1)$.

    Autograd through ``sigma_t`` with respect to ``t`` gives ``d_sigma_t`` (finite at $t = 1$;
    first-order reverse mode).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, *, eps: float = _DEFAULT_EPS):
        if not beta_min > 0:
            raise ValueError(f"beta_min must be positive, got {beta_min!r}")
        if not beta_max > beta_min:
            raise ValueError(f"beta_max must exceed beta_min={beta_min}, got {beta_max!r}")
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.eps = check_open_unit(eps, "eps")

    def _T(self, u: Tensor) -> Tensor:
        return 0.5 * u * u * (self.beta_max - self.beta_min) + u * self.beta_min

    def _evaluate(self, t: Tensor) -> SchedulerOutput:
        b, B = self.beta_min, self.beta_max
        T = self._T(1.0 - t)
        alpha = torch.exp(-0.5 * T)
        sigma = torch.sqrt(-torch.expm1(-T))
        u_d = 1.0 - t.clamp_max(1.0 - self.eps)
        T_d = self._T(u_d)
        dT = -(u_d * (B - b) + b)  # dT/dt
        d_alpha = -0.5 * dT * torch.exp(-0.5 * T_d)
        d_sigma = 0.5 * dT * torch.exp(-T_d) / torch.sqrt(-torch.expm1(-T_d))
        sigma = _with_time_derivative(sigma, t, d_sigma)
        return SchedulerOutput(alpha_t=alpha, sigma_t=sigma, d_alpha_t=d_alpha, d_sigma_t=d_sigma)

    def snr_inverse(self, snr: Tensor) -> Tensor:
        r"""Return $t$ with $\alpha_t/\sigma_t = \mathrm{snr}$.

        ``snr = inf`` gives 1. An SNR below $\mathrm{snr}(0)$ maps to $t < 0$ (not clamped).
        """
        check_floating(snr, "snr")
        b, B = self.beta_min, self.beta_max
        T = torch.log1p(torch.reciprocal(snr * snr))  # e^{-T} = snr^2 / (1 + snr^2)
        u = (torch.sqrt(b * b + 2.0 * (B - b) * T) - b) / (B - b)
        return 1.0 - u

    def __repr__(self) -> str:
        return f"VPScheduler(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"


class LinearVPScheduler(Scheduler):
    r"""$\alpha_t = t$, $\sigma_t = \sqrt{1 - t^2}$ (variance preserving, linear in the signal).

    **End point.** $\dot\sigma_t = -t/\sqrt{1-t^2}$ diverges at $t = 1$; it is evaluated at
    $\min(t, 1-\epsilon)$ with $\epsilon$ = ``eps`` in $(0, 1)$ (default ``1e-5``, giving
    $|\dot\sigma_1| \approx 224$); autograd through ``sigma_t`` in ``t`` gives that same guarded
    derivative, finite at $t = 1$.
    """

    def __init__(self, *, eps: float = _DEFAULT_EPS) -> None:
        self.eps = check_open_unit(eps, "eps")

    def _evaluate(self, t: Tensor) -> SchedulerOutput:
        sigma = torch.sqrt((1.0 - t) * (1.0 + t))
        t_d = t.clamp_max(1.0 - self.eps)
        d_sigma = -t_d / torch.sqrt((1.0 - t_d) * (1.0 + t_d))
        sigma = _with_time_derivative(sigma, t, d_sigma)
        return SchedulerOutput(
            alpha_t=t, sigma_t=sigma, d_alpha_t=torch.ones_like(t), d_sigma_t=d_sigma
        )

    def snr_inverse(self, snr: Tensor) -> Tensor:
        r"""$t = 1/\sqrt{1 + \mathrm{snr}^{-2}}$ (``inf`` gives 1, 0 gives 0)."""
        check_floating(snr, "snr")
        return torch.rsqrt(1.0 + torch.reciprocal(snr * snr))


class CosineScheduler(Scheduler):
    r"""$\alpha_t = \sin(\tfrac{\pi}{2} t)$, $\sigma_t = \cos(\tfrac{\pi}{2} t)$.

    Finite with finite derivatives on all of $[0, 1]$. $\sigma_t$ is computed as
    $\sin(\tfrac{\pi}{2}(1-t))$ so that $\sigma_1 = 0$ exactly (``cos(pi/2)`` is ``6e-17`` in floating
    point). The SNR $\tan(\tfrac{\pi}{2}t)$ is infinite at $t = 1$; ``snr_inverse(inf)`` returns 1.
    """

    def _evaluate(self, t: Tensor) -> SchedulerOutput:
        h = 0.5 * math.pi
        alpha = torch.sin(h * t)
        sigma = torch.sin(h * (1.0 - t))
        return SchedulerOutput(
            alpha_t=alpha, sigma_t=sigma, d_alpha_t=h * sigma, d_sigma_t=-h * alpha
        )

    def snr_inverse(self, snr: Tensor) -> Tensor:
        check_floating(snr, "snr")
        return torch.atan(snr) * (2.0 / math.pi)
