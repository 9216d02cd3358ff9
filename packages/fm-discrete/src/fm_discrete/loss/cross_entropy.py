"""Cross-entropy training of the posterior $p_{1|t}$: the simpler alternative to the generalized KL."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fm_discrete.loss._inputs import check_loss_inputs, check_reduction, reduce

__all__ = ["MixturePathCrossEntropy"]


class MixturePathCrossEntropy(nn.Module):
    r"""$-\log p_{1|t}(x_1^i \mid x_t)$ per position: cross-entropy of the posterior against the data.

    Both losses have the same minimiser (the true posterior). Cross-entropy weights every time
    equally and is bounded as $t \to 1$; the generalized KL weights by $\dot\kappa_t/(1-\kappa_t)$ and
    is the term of the ELBO. With ``only_changed=True`` only positions with $x_t^i \ne x_1^i$ count
    (for a mask source: the masked positions), as in masked language modelling.

    Args:
        reduction: ``"mean"`` (over counted positions), ``"sum"`` or ``"none"`` (``[B, ...]``, zeros
            where not counted).
        only_changed: count only positions where ``x_t != x_1`` (needs ``x_t``).

    Example:
        >>> loss_fn = MixturePathCrossEntropy()
        >>> loss_fn(torch.randn(2, 6, 10), torch.randint(0, 10, (2, 6))).shape
        torch.Size([])
    """

    def __init__(self, reduction: str = "mean", *, only_changed: bool = False) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.only_changed = only_changed

    def forward(
        self, logits: Tensor, x_1: Tensor, x_t: Tensor | None = None, t: Tensor | None = None
    ) -> Tensor:
        """Evaluate the loss.

        Args:
            logits: posterior logits, shape ``[B, ..., V]``.
            x_1: target tokens, shape ``[B, ...]``.
            x_t: path sample, shape ``[B, ...]`` (required when ``only_changed``).
            t: times ``[B]`` (unused; accepted for a signature like ``MixturePathGeneralizedKL``).
        """
        if self.only_changed and x_t is None:
            raise ValueError("x_t is required when only_changed=True")
        check_loss_inputs(logits, x_1, x_t, t)
        log_p = torch.log_softmax(logits.float(), dim=-1)
        loss = -log_p.gather(-1, x_1.unsqueeze(-1).long()).squeeze(-1)
        if not self.only_changed:
            return reduce(loss, self.reduction)
        weight = (x_t != x_1).to(loss.dtype)
        loss = loss * weight
        if self.reduction == "mean":
            return loss.sum() / weight.sum().clamp_min(1.0)
        return reduce(loss, self.reduction)
