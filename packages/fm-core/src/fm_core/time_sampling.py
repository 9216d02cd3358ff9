r"""Training-time samplers: which $t \in [0, 1]$ the flow-matching loss sees, and how often.

Uniform time is the default of Lipman et al. (2023). Logit-normal time (Esser et al., 2024, SD3)
puts more weight on the middle of the path, where the velocity is hardest to predict. The
log-normal-$\sigma$ sampler is EDM's (Karras et al., 2022) noise-level distribution,
$\ln\sigma \sim \mathcal N(P_\text{mean}, P_\text{std}^2)$, mapped to flow-matching time.

**End points.** Every sampler draws in float64, maps to $[0, 1]$, casts to ``dtype`` and then
clamps to $[\epsilon, 1 - \epsilon]$ with $\epsilon$ = ``eps`` (default 0: the closed interval).
Pass ``eps > 0`` when the loss is singular at an end point, e.g. converting an ``x_1``
prediction to a velocity divides by $\sigma_t$, which is 0 at $t = 1$. In float32,
$1 - \epsilon$ rounds to 1 for $\epsilon < 6 \cdot 10^{-8}$.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from fm_core.path.scheduler.scheduler import Scheduler

__all__ = [
    "LogNormalSigmaTimeSampler",
    "LogitNormalTimeSampler",
    "TimePairSampler",
    "TimeSampler",
    "UniformTimeSampler",
]


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps < 0.5:
        raise ValueError(f"eps must be a number in [0, 0.5), got {eps!r}")
    return float(eps)


def _check_finite(value: object, name: str, positive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and not value > 0):
        kind = "a positive finite number" if positive else "a finite number"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return float(value)


class TimeSampler(ABC):
    r"""Draws training times $t \in [0, 1]$, one per sample.

    Subclasses implement ``_sample(batch_size, device, generator)``, returning float64 values in
    $[0, 1]$; this class checks the arguments, casts and clamps (see the module docstring).

    Args:
        eps: clamp to $[\epsilon, 1 - \epsilon]$ (default 0).
    """

    def __init__(self, *, eps: float = 0.0) -> None:
        self.eps = _check_eps(eps)

    def __call__(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Draw ``batch_size`` times.

        Args:
            batch_size: number of times, a non-negative int.
            device: where to create them (default: the generator's device, else CPU).
            dtype: a floating dtype (default ``torch.get_default_dtype()``).
            generator: a ``torch.Generator`` on ``device``, for reproducible draws.

        Returns:
            Times of shape ``[batch_size]`` in $[\epsilon, 1 - \epsilon]$.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
        if dtype is None:
            dtype = torch.get_default_dtype()
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        t = self._sample(batch_size, torch.device(device), generator)
        return t.to(dtype).clamp(self.eps, 1.0 - self.eps)

    @abstractmethod
    def _sample(
        self, batch_size: int, device: torch.device, generator: torch.Generator | None
    ) -> Tensor: ...


class UniformTimeSampler(TimeSampler):
    r"""$t \sim \mathcal U[0, 1]$.

    Args:
        eps: clamp to $[\epsilon, 1 - \epsilon]$ (default 0).

    Example:
        >>> t = UniformTimeSampler()(128, generator=torch.Generator().manual_seed(0))
        >>> t.shape
        torch.Size([128])
    """

    def _sample(self, batch_size, device, generator):
        return torch.rand(batch_size, device=device, dtype=torch.float64, generator=generator)

    def __repr__(self) -> str:
        return f"UniformTimeSampler(eps={self.eps:g})"


class LogitNormalTimeSampler(TimeSampler):
    r"""Logit-normal time (SD3): $\operatorname{logit}(t) \sim \mathcal N(m, s^2)$, $t = 1/(1 + e^{-u})$.

    The density is $\frac{1}{s\sqrt{2\pi}}\frac{1}{t(1-t)}
    \exp\!\big(-\frac{(\operatorname{logit} t - m)^2}{2 s^2}\big)$; the $q$-quantile is
    $\operatorname{sigmoid}(m + s\,\Phi^{-1}(q))$ and the median $\operatorname{sigmoid}(m)$.
    SD3 trains with $m = 0$, $s = 1$. In our time convention ($t = 1$ is data) $m > 0$ shifts
    samples towards the data end.

    Args:
        loc: $m$ (default 0).
        scale: $s > 0$ (default 1).
        eps: clamp to $[\epsilon, 1 - \epsilon]$ (default 0).

    Example:
        >>> t = LogitNormalTimeSampler(loc=0.0, scale=1.0)(128)
        >>> bool(((t >= 0) & (t <= 1)).all())
        True
    """

    def __init__(self, loc: float = 0.0, scale: float = 1.0, *, eps: float = 0.0) -> None:
        super().__init__(eps=eps)
        self.loc = _check_finite(loc, "loc")
        self.scale = _check_finite(scale, "scale", positive=True)

    def _sample(self, batch_size, device, generator):
        u = torch.randn(batch_size, device=device, dtype=torch.float64, generator=generator)
        return torch.sigmoid(self.loc + self.scale * u)

    def __repr__(self) -> str:
        return f"LogitNormalTimeSampler(loc={self.loc:g}, scale={self.scale:g}, eps={self.eps:g})"


class LogNormalSigmaTimeSampler(TimeSampler):
    r"""EDM's noise levels, $\ln\sigma \sim \mathcal N(P_\text{mean}, P_\text{std}^2)$, as FM time.

    EDM's $\sigma$ is the noise-to-signal ratio of $x = x_1 + \sigma\,\epsilon$. For an affine
    path $x_t = \sigma_t x_0 + \alpha_t x_1$ that is $\sigma = \sigma_t / \alpha_t$, so
    $t = \mathrm{snr}^{-1}(1/\sigma)$ through ``scheduler.snr_inverse``. With the default
    CondOT schedule ($\alpha_t = t$, $\sigma_t = 1 - t$):

    $$t = \frac{1}{1 + \sigma},$$

    which makes this sampler the logit-normal one with $m = -P_\text{mean}$, $s = P_\text{std}$:
    the defaults $P_\text{mean} = -1.2$, $P_\text{std} = 1.2$ (EDM's image setting) give a median
    time of $\operatorname{sigmoid}(1.2) \approx 0.77$, skewed towards the data. Times that a
    scheduler maps outside $[0, 1]$ (e.g. a VP schedule, whose SNR at $t=0$ is not 0) are clamped.

    Args:
        p_mean: $P_\text{mean}$ (default -1.2).
        p_std: $P_\text{std} > 0$ (default 1.2).
        scheduler: the path's ``Scheduler`` (default ``None``: CondOT, $t = 1/(1+\sigma)$).
        eps: clamp to $[\epsilon, 1 - \epsilon]$ (default 0).

    Example:
        >>> sampler = LogNormalSigmaTimeSampler(p_mean=-1.2, p_std=1.2)
        >>> t = sampler(256, generator=torch.Generator().manual_seed(0))
        >>> t.shape
        torch.Size([256])
    """

    def __init__(
        self,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        *,
        scheduler: Scheduler | None = None,
        eps: float = 0.0,
    ) -> None:
        super().__init__(eps=eps)
        self.p_mean = _check_finite(p_mean, "p_mean")
        self.p_std = _check_finite(p_std, "p_std", positive=True)
        if scheduler is not None and not isinstance(scheduler, Scheduler):
            raise TypeError(
                f"scheduler must be an fm_core Scheduler or None, got {type(scheduler).__name__}"
            )
        self.scheduler = scheduler

    def _sample(self, batch_size, device, generator):
        u = torch.randn(batch_size, device=device, dtype=torch.float64, generator=generator)
        log_sigma = self.p_mean + self.p_std * u
        if self.scheduler is None:
            return torch.sigmoid(-log_sigma)  # 1 / (1 + sigma), without overflow
        return self.scheduler.snr_inverse(torch.exp(-log_sigma)).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return (
            f"LogNormalSigmaTimeSampler(p_mean={self.p_mean:g}, p_std={self.p_std:g}, "
            f"scheduler={self.scheduler!r}, eps={self.eps:g})"
        )


class TimePairSampler:
    r"""Draws the time pairs $(t, r)$, $t \le r$, of a flow-map (MeanFlow) loss, one per sample.

    $t$ is where the path sample $x_t$ lies and $r$ where the flow map jumps to; in our
    convention ($t = 1$ is data) jumps go towards the data, so $t \le r$. Two independent draws
    $a, b$ of ``sampler`` give $t = \min(a, b)$, $r = \max(a, b)$; then a fraction
    ``equal_fraction`` of the pairs (a Bernoulli draw per sample) is set to $r = t$, where the
    loss is plain flow matching. MeanFlow (Geng et al., 2025) trains ImageNet with 75 % of pairs
    equal and logit-normal times of mean $-0.4$, std 1 in the paper's time, where data is at 0:
    ``TimePairSampler.from_meanflow(-0.4, 1.0, 0.75)`` converts such published settings (the one
    place where the papers' time $1 - t$ enters fm-core).

    Args:
        sampler: the ``TimeSampler`` both times are drawn from (default: logit-normal with
            $m = 0.4$, $s = 1$, the MeanFlow ImageNet setting in our time).
        equal_fraction: probability of $r = t$, in $[0, 1]$ (default 0.75).

    Example:
        >>> t, r = TimePairSampler()(256, generator=torch.Generator().manual_seed(0))
        >>> bool((t <= r).all())
        True
    """

    def __init__(self, sampler: TimeSampler | None = None, *, equal_fraction: float = 0.75) -> None:
        if sampler is None:
            sampler = LogitNormalTimeSampler(0.4, 1.0)
        if not isinstance(sampler, TimeSampler):
            raise TypeError(f"sampler must be a fm_core TimeSampler, got {type(sampler).__name__}")
        frac = _check_finite(equal_fraction, "equal_fraction")
        if not 0.0 <= frac <= 1.0:
            raise ValueError(f"equal_fraction must lie in [0, 1], got {equal_fraction!r}")
        self.sampler = sampler
        self.equal_fraction = frac

    @classmethod
    def from_meanflow(
        cls, loc: float = -0.4, scale: float = 1.0, equal_fraction: float = 0.75
    ) -> TimePairSampler:
        r"""The sampler of a MeanFlow-paper setting: logit-normal $(m, s)$ in the papers' time.

        The papers put data at time 0 (our time is $1 - t$), so their logit-normal $(m, s)$ is
        ours with $-m$. CIFAR-10 in the MeanFlow paper: ``from_meanflow(-2.0, 2.0, 0.25)``.
        """
        return cls(LogitNormalTimeSampler(-loc, scale), equal_fraction=equal_fraction)

    def __call__(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Draw ``batch_size`` pairs.

        Args:
            batch_size: number of pairs, a non-negative int.
            device: where to create them (default: the generator's device, else CPU).
            dtype: a floating dtype (default ``torch.get_default_dtype()``).
            generator: a ``torch.Generator`` on ``device``.

        Returns:
            ``(t, r)``, each of shape ``[batch_size]``, with $0 \le t \le r \le 1$.
        """
        kw = {"device": device, "dtype": torch.float64, "generator": generator}
        a = self.sampler(batch_size, **kw)
        b = self.sampler(batch_size, **kw)
        equal = torch.rand(batch_size, device=a.device, dtype=torch.float64, generator=generator)
        t, r = torch.minimum(a, b), torch.maximum(a, b)
        r = torch.where(equal < self.equal_fraction, t, r)
        dtype = dtype or torch.get_default_dtype()
        return t.to(dtype), r.to(dtype)

    def __repr__(self) -> str:
        return f"TimePairSampler({self.sampler!r}, equal_fraction={self.equal_fraction:g})"
