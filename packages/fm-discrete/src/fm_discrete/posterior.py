r"""Posterior models over a vocabulary with a mask token: the mask is never data.

A network trained as $p_{1|t}(\cdot \mid x_t)$ on a mask source needs two edits of its logits,
written once here instead of in every app: the mask token gets logit $-\infty$ (``forbid_token``),
and, for a mask source, positions already unmasked are copied (their exact posterior is a point
mass on their token), so only masked positions carry loss and sampling changes only them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MaskedPosterior", "forbid_token"]


def forbid_token(logits: Tensor, token: int) -> Tensor:
    """``logits`` ``[..., V]`` with entry ``token`` set to $-\\infty$ (out of place; no host copy).

    Example:
        >>> forbid_token(torch.zeros(1, 3), 2)
        tensor([[0., 0., -inf]])
    """
    index = torch.full((1,), token, device=logits.device)  # made on the device: no copy
    return logits.index_fill(-1, index, -torch.inf)


class MaskedPosterior(nn.Module):
    r"""The solver's and the loss' view of a network: ``model(x=x_t, t=t)`` -> posterior logits.

    Args:
        net: called as ``net(x, t, **extras)`` -> logits ``[B, L, V]``.
        mask_token: the mask id (gets logit $-\infty$).
        copy_unmasked: for a mask source: positions with $x_t^i \ne$ mask get the one-hot
            posterior on their token (logit 0 there, $-\infty$ elsewhere). ``False`` for a
            uniform source (the mask is still forbidden: it is never data).

    Example:
        >>> net = lambda x, t: torch.zeros(*x.shape, 4)
        >>> MaskedPosterior(net, mask_token=3)(torch.tensor([[1, 3]]), torch.zeros(1)).exp()
        tensor([[[0., 1., 0., 0.],
                 [1., 1., 1., 0.]]])
    """

    def __init__(self, net: nn.Module, mask_token: int, *, copy_unmasked: bool = True) -> None:
        super().__init__()
        if isinstance(mask_token, bool) or not isinstance(mask_token, int) or mask_token < 0:
            raise TypeError(f"mask_token must be a non-negative int, got {mask_token!r}")
        self.net = net
        self.mask_token = mask_token
        self.copy_unmasked = bool(copy_unmasked)

    def forward(self, x: Tensor, t: Tensor, **extras) -> Tensor:
        """Logits ``[B, L, V]`` for tokens ``x`` ``[B, L]`` at times ``t`` ``[B]``."""
        logits = forbid_token(self.net(x, t, **extras), self.mask_token)
        if self.copy_unmasked:
            keep = (x != self.mask_token).unsqueeze(-1)
            copied = torch.full_like(logits, -torch.inf).scatter_(-1, x.unsqueeze(-1), 0.0)
            logits = torch.where(keep, copied, logits)
        return logits
