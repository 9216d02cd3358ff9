"""The model interface every solver calls: ``model(x=x, t=t, **extras)``."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["ModelWrapper"]


class ModelWrapper(nn.Module):
    """Wrap a network so that solvers can call it as ``forward(x, t, **extras)``.

    The default ``forward`` calls ``model(x=x, t=t, **extras)``. Subclass and override
    ``forward`` to adapt a network with another calling convention (for example one that takes
    ``t`` broadcast to ``x``'s shape, or returns logits that must become probabilities).

    Args:
        model: the wrapped ``nn.Module``.

    Example:
        >>> class Net(nn.Module):
        ...     def forward(self, x, t):
        ...         return -x
        >>> ModelWrapper(Net())(x=torch.ones(2, 3), t=torch.zeros(2)).shape
        torch.Size([2, 3])
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, t: Tensor, **extras: Any) -> Tensor:
        """Return the wrapped model's output at ``x`` (shape ``[B, ...]``) and time ``t``.

        Args:
            x: state, shape ``[B, ...]``.
            t: time, shape ``[B]`` or a 0-dim tensor (solvers pass a 0-dim tensor).
            **extras: forwarded to the model (labels, conditioning).
        """
        return self.model(x=x, t=t, **extras)
