"""Small numerically safe building blocks shared by the manifolds."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["may_hold_true", "safe_norm", "sinc", "theta_over_sin"]


def may_hold_true(mask: Tensor) -> bool:
    """Whether a rarely-taken, exact-anyway branch must run for ``mask``: ``mask.any()``, sync-free.

    Reads the mask back only in eager mode on the CPU (free there, and it skips the rare branch in
    the common case). While ``torch.compile`` traces or on an accelerator it returns ``True``
    without looking, so the general ``torch.where`` branch runs: no host sync, no graph break.
    """
    if torch.compiler.is_compiling() or mask.device.type != "cpu":
        return True
    return bool(mask.any())


def _tiny(x: Tensor) -> float:
    # Below this squared norm a vector counts as zero: sqrt(tiny) is ~1e-19 in float64 and
    # ~1e-9 in float32, far under every tolerance we test at, and the clamp keeps
    # d sqrt / d x finite (the gradient of sqrt at 0 is infinite).
    return torch.finfo(x.dtype).tiny ** 0.5


def safe_norm(u: Tensor, dim: int | tuple[int, ...] = -1, keepdim: bool = True) -> Tensor:
    """Euclidean norm whose gradient is finite (zero) at ``u = 0``."""
    sq = (u * u).sum(dim=dim, keepdim=keepdim)
    # Exactly 0 at u = 0; the clamp keeps the unused branch's gradient finite.
    return torch.where(sq > 0, sq.clamp_min(_tiny(u)).sqrt(), torch.zeros_like(sq))


def _small(x: Tensor) -> float:
    # Switch to a Taylor series below this angle: the 4-term series is exact to machine
    # precision there (the next term is ~theta^6/5040 ~ 1e-22 in float64 at theta = 1e-3).
    return 1e-3 if x.dtype == torch.float64 else 2e-2


def sinc(theta: Tensor) -> Tensor:
    r"""$\sin\theta / \theta$, finite with finite gradients at $\theta = 0$."""
    small = theta.abs() < _small(theta)
    safe = torch.where(small, torch.ones_like(theta), theta)
    t2 = theta * theta
    return torch.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, torch.sin(safe) / safe)


def theta_over_sin(theta: Tensor, sin_theta: Tensor) -> Tensor:
    r"""$\theta / \sin\theta$ for $\theta \in [0, \pi)$, finite with finite gradients at $0$.

    Near $\pi$ it grows like $1 / (\pi - \theta)$: callers handle the antipode themselves.
    """
    small = theta.abs() < _small(theta)
    safe = torch.where(small, torch.ones_like(sin_theta), sin_theta.clamp_min(_tiny(theta)))
    t2 = theta * theta
    return torch.where(small, 1.0 + t2 / 6.0 + 7.0 * t2 * t2 / 360.0, theta / safe)
