"""Exponential moving average of a model's weights, on PyTorch's own ``AveragedModel``."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from fm_core.training.distributed import unwrap_model


class EMA(AveragedModel):
    r"""An exponential moving average of ``model``'s parameters and buffers.

    After each optimiser step call :meth:`update`; $\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta$
    (the first update copies $\theta$). Sample from ``ema.module`` in eval mode. This is
    ``torch.optim.swa_utils.AveragedModel`` with its EMA averaging function (one fused
    ``torch._foreach_lerp_`` per update), plus unwrapping of DDP / ``torch.compile`` wrappers, so the
    averaged copy is a plain module whose ``state_dict`` matches the model's.

    Args:
        model: the module being trained (may be wrapped by DDP or ``torch.compile``).
        decay: the EMA decay $d$ in $[0, 1)$.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> ema = EMA(net, decay=0.9)
        >>> ema.update(net)
        >>> torch.equal(ema.module.weight, net.weight)
        True
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be a float in [0, 1), got {decay!r}")
        super().__init__(
            unwrap_model(model), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )
        self.decay = float(decay)
        self.module.eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` (wrapped or not) into the average."""
        self.update_parameters(unwrap_model(model))
