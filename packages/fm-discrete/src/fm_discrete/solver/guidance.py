r"""Classifier-free guidance for discrete models, combined in rate space.

With $u^c, u^u$ the rates of the conditional and unconditional posteriors at the same $x_t$, the
guided rate is $u^w = (1+w)\,u^c - w\,u^u$, clipped at zero off the diagonal. For the mixture path
$u(y, x_t) = \frac{\dot\kappa_t}{1-\kappa_t}\big(p_{1|t}(y) - \delta_{x_t}(y)\big)$, so for $y \ne x_t$

$$u^w(y, x_t) = \frac{\dot\kappa_t}{1-\kappa_t}\, q(y), \qquad q(y) = \max\big((1+w)\,p^c(y) - w\,p^u(y),\, 0\big).$$

With $S = \sum_{y \ne x_t} q(y)$: when $S \le 1$ this is the mixture step with posterior $q$ and
$q(x_t) = 1 - S$; when $S > 1$ the total rate exceeds the unguided one by the factor $S$, so the jump
probability becomes $1 - (1-a)^S$ and the target is $q / S$. Both cases are one step with the
unnormalised scores $\tilde q$ and jump probability $1 - (1-a)^{\max(S, 1)}$; at $w = 0$, $\tilde q = p^c$.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["guided_scores"]


def guided_scores(
    p_cond: Tensor, p_uncond: Tensor, x_t: Tensor, scale: float
) -> tuple[Tensor, Tensor]:
    """Guided (unnormalised) posterior scores and the rate factor $\\max(S, 1)$.

    Args:
        p_cond: conditional posterior probabilities, ``[N, V]``.
        p_uncond: unconditional posterior probabilities, ``[N, V]``.
        x_t: current ids, ``[N]``.
        scale: guidance scale $w$.

    Returns:
        ``(q, rate_factor)``: ``q`` ``[N, V]`` non-negative (one new buffer), ``rate_factor`` ``[N]``.
    """
    q = torch.mul(p_cond, 1.0 + scale)
    q.sub_(p_uncond, alpha=scale).clamp_min_(0.0)
    idx = x_t.unsqueeze(-1)
    q.scatter_(-1, idx, 0.0)
    off = q.sum(-1)
    q.scatter_(-1, idx, (1.0 - off).clamp_min(0.0).unsqueeze(-1).to(q.dtype))
    return q, off.clamp_min(1.0)
