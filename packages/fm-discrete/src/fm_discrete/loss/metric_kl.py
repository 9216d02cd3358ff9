r"""The generalized KL loss on a metric-induced path (the ELBO's integrand, as on the mixture path)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fm_discrete.loss._inputs import check_loss_inputs, check_reduction, reduce
from fm_discrete.path.metric import _BLOCK_ELEMENTS, MetricDiscreteProbPath, _gaps, _log_kernel

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
        # The model's rates in log space: a confident wrong posterior underflows u^θ to 0 where
        # u^c > 0 (an infinite loss, then NaN weights); its logarithm stays finite.
        log_m = _model_log_rates(self.path, logits.to(dtype), x_t, t)
        off = torch.ones_like(target, dtype=torch.bool).scatter_(-1, x_t.unsqueeze(-1), False)
        u_c = torch.where(off, target, 0.0)
        u_m = torch.where(off, log_m.exp(), 0.0)
        # u^c log(u^c / u^θ) is 0 where u^c = 0, whatever u^θ (log of 0 kept out by where()).
        safe_c = torch.where(u_c > 0, u_c, 1.0)
        safe_m = torch.where(u_c > 0, log_m, 0.0)
        log_term = torch.where(u_c > 0, u_c * (safe_c.log() - safe_m), 0.0)
        loss = (log_term - u_c + u_m).sum(-1)
        return reduce(loss, self.reduction)


def _model_log_rates(
    path: MetricDiscreteProbPath, logits: Tensor, x_t: Tensor, t: Tensor
) -> Tensor:
    r"""$\log u^\theta_t(x, x_t)$ for every $x$ (``-inf`` where the rate is 0, at $x_t$ among them).

    $\log\dot\beta_t + \operatorname{logsumexp}_y\big[\log p^\theta_{1|t}(y) + \log p_t(x \mid y)
    + \log\,[d(x_t, y) - d(x, y)]_+\big]$, in blocks of about $2^{22}$ entries of ``[y, x]``.
    """
    vocab = path.vocabulary_size
    batch = x_t.shape[0]
    dtype = logits.dtype
    log_post = torch.log_softmax(logits, dim=-1).reshape(batch, -1, vocab)
    flat_x = x_t.reshape(batch, -1)
    beta, d_beta = path._row_schedule(t, batch)
    d, d_y = path._rate_tables(logits.device)
    # log p_t(x | y) per row: [B, y, x] (finite: beta is finite before t = 1).
    log_p = torch.log_softmax(_log_kernel(beta[:, None, None], d_y), dim=-1)
    log_p = log_p.to(dtype)
    log_d_beta = d_beta.log().to(dtype)
    rows, cols = torch.meshgrid(
        torch.arange(batch, device=x_t.device),
        torch.arange(flat_x.shape[1], device=x_t.device),
        indexing="ij",
    )
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    step = max(1, _BLOCK_ELEMENTS // (vocab * vocab))
    out = []
    for s in range(0, rows.numel(), step):
        r, c = rows[s : s + step], cols[s : s + step]
        z = flat_x[r, c]
        log_gap = _gaps(d[z], d_y).log().to(dtype)
        terms = log_post[r, c].unsqueeze(-1) + log_p[r] + log_gap  # [n, y, x]
        # A rate that is 0 (every y's gap is 0) stays -inf with a zero, not NaN, gradient.
        none = torch.isneginf(terms).all(dim=1, keepdim=True)
        lse = torch.logsumexp(torch.where(none, 0.0, terms), dim=1)
        lse = torch.where(none.squeeze(1), float("-inf"), lse)
        out.append(lse + log_d_beta[r, None])
    return torch.cat(out).reshape(logits.shape)
