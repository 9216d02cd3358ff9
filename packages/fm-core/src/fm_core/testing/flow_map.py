"""A closed-form flow-map model for tests: Gaussian to Gaussian along the CondOT path."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["GaussianFlowMap"]


class GaussianFlowMap(nn.Module):
    r"""The exact average velocity of the CondOT flow from $N(0, I)$ to $N(\mu, s^2 I)$.

    The flow map of ``GaussianFlow`` is $x_t = t\mu + \sqrt{v_t}\, x_0$ with
    $v_t = (1-t)^2 + t^2 s^2$, so a point $x$ at time $t$ lands at
    $\phi_{t \to r}(x) = r\mu + \sqrt{v_r / v_t}\,(x - t\mu)$ and the average velocity is

    $$u(x, t, r) = \frac{\phi_{t\to r}(x) - x}{r - t},$$

    which tends to ``GaussianFlow``'s velocity as $r \to t$ (returned exactly where
    $|r - t| < 10^{-4}$: the quotient loses digits there). ``mu`` and ``log_s`` are parameters,
    so the family can be fitted by a loss.

    Args:
        mu: target mean, shape of one sample (e.g. ``[D]``).
        s: target standard deviation, positive.

    Example:
        >>> fmap = GaussianFlowMap(torch.ones(2), 0.5)
        >>> x_1 = FlowMapSolver(fmap).sample(torch.randn(8, 2))  # one exact jump
    """

    def __init__(self, mu: Tensor, s: float) -> None:
        super().__init__()
        self.mu = nn.Parameter(mu.clone())
        self.log_s = nn.Parameter(torch.tensor(math.log(s), dtype=mu.dtype))

    def _var(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s2 = torch.exp(2 * self.log_s)
        return (1 - t) ** 2 + t**2 * s2, -2 * (1 - t) + 2 * t * s2

    def forward(self, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        """Average velocity at ``x`` ``[B, ...]`` from ``t`` to ``r`` (each ``[]`` or ``[B]``)."""
        shape = (-1,) + (1,) * (x.ndim - 1)
        t = t.to(x.dtype).reshape(shape) if t.ndim else t.to(x.dtype)
        r = r.to(x.dtype).reshape(shape) if r.ndim else r.to(x.dtype)
        mu = self.mu.to(x.dtype)
        var_t, d_var_t = self._var(t)
        var_r, _ = self._var(r)
        centred = x - t * mu
        velocity = mu + d_var_t / (2 * var_t) * centred
        gap = r - t
        small = gap.abs() < 1e-4
        safe = torch.where(small, torch.ones_like(gap), gap)
        jump = (r * mu + torch.sqrt(var_r / var_t) * centred - x) / safe
        return torch.where(small, velocity, jump)

    def flow(self, x_0: Tensor, t: float) -> Tensor:
        r"""The exact flow map from time 0, $x_t = t\mu + \sqrt{v_t}\,x_0$."""
        var, _ = self._var(torch.tensor(t, dtype=x_0.dtype))
        return t * self.mu + var.sqrt() * x_0
