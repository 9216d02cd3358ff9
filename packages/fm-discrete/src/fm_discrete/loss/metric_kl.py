r"""The generalized KL loss on a metric-induced path (the ELBO's integrand, as on the mixture path)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fm_discrete.loss._inputs import check_loss_inputs, check_reduction, reduce
from fm_discrete.path.metric import MetricDiscreteProbPath

__all__ = ["MetricPathGeneralizedKL"]


class MetricPathGeneralizedKL(nn.Module):
    r"""Bregman divergence ($\phi = u\log u$) between the conditional and the model's rates, per position.

    With $u^c = u_t(\cdot, x_t \mid x_1)$ (``conditional_velocity``) and
    $u^\theta = \dot\beta_t \sum_y p^\theta_{1|t}(y)\,p_t(\cdot \mid y)\,[d(x_t, y) - d(\cdot, y)]_+$
    (``posterior_to_velocity``), summed over $x \ne x_t$:

    $$\ell = \sum_{x \ne x_t} u^c(x)\log\frac{u^c(x)}{u^\theta(x)} - u^c(x) + u^\theta(x) \;\ge 0 .$$

    Its integral over $t \in [0, 1]$ and $x_t \sim p_t(\cdot \mid x_1)$, summed over positions,
    bounds $-\log p^\theta_1(x_1)$, as ``MixturePathGeneralizedKL`` does on the mixture path; with
    the discrete metric $d = 1 - \delta$ the two losses agree (tested). It costs $O(V^2)$ per
    position (the model's rates): meant for small vocabularies (pixel intensities, $V \le 256$);
    for large ones train with ``MixturePathCrossEntropy``, whose minimiser (the true posterior) is
    the same. $t$ is guarded at $1 - \epsilon$ (the path's ``eps``).

    Args:
        path: the ``MetricDiscreteProbPath``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``[B, ...]``).

    Example:
        >>> path = MetricDiscreteProbPath.from_embeddings(torch.arange(6.0).unsqueeze(-1))
        >>> x_1 = torch.randint(0, 6, (2, 4))
        >>> s = path.sample(torch.randint(0, 6, (2, 4)), x_1, torch.rand(2))
        >>> MetricPathGeneralizedKL(path)(torch.randn(2, 4, 6), x_1, s.x_t, s.t).shape
        torch.Size([])
    """

    def __init__(self, path: MetricDiscreteProbPath, reduction: str = "mean") -> None:
        super().__init__()
        if not isinstance(path, MetricDiscreteProbPath):
            raise TypeError(f"path must be a MetricDiscreteProbPath, got {type(path).__name__}")
        self.path = path
        self.reduction = check_reduction(reduction)

    def forward(self, logits: Tensor, x_1: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Evaluate the loss.

        Args:
            logits: posterior logits ``[B, ..., V]``.
            x_1: targets ``[B, ...]``.
            x_t: path samples ``[B, ...]``.
            t: times ``[B]``.

        Returns:
            A scalar, or ``[B, ...]`` with ``reduction="none"``.
        """
        check_loss_inputs(logits, x_1, x_t, t)
        if logits.shape[-1] != self.path.vocabulary_size:
            raise ValueError(
                f"logits must have V = {self.path.vocabulary_size} entries in the last dimension, "
                f"got {logits.shape[-1]}"
            )
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        target = self.path.conditional_velocity(x_t, x_1, t).to(dtype)
        model = self.path.posterior_to_velocity(logits.to(dtype), x_t, t)
        off = torch.ones_like(target, dtype=torch.bool).scatter_(-1, x_t.unsqueeze(-1), False)
        u_c = torch.where(off, target, 0.0)
        u_m = torch.where(off, model, 0.0)
        # u^c log(u^c / u^θ) is 0 where u^c = 0, whatever u^θ (log of 0 kept out by where()).
        safe_c = torch.where(u_c > 0, u_c, 1.0)
        safe_m = torch.where(u_c > 0, u_m, 1.0)
        log_term = torch.where(u_c > 0, u_c * (safe_c.log() - safe_m.log()), 0.0)
        loss = (log_term - u_c + u_m).sum(-1)
        return reduce(loss, self.reduction)
