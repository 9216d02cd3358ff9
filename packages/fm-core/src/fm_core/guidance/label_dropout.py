"""Label dropout for classifier-free guidance training: one model learns $u(x,t|y)$ and $u(x,t|\\varnothing)$."""

from __future__ import annotations

import torch
from torch import Tensor

from fm_core.guidance.cfg import check_null_label, null_like
from fm_core.utils.checks import check_tensor

__all__ = ["drop_labels"]


def drop_labels(
    labels: Tensor,
    p: float,
    null_label: int | float | Tensor,
    *,
    generator: torch.Generator | None = None,
    return_mask: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Replace each sample's label by ``null_label`` independently with probability ``p``.

    Train with ``model(x_t, t, label=drop_labels(y, 0.1, null_label=num_classes))`` and sample
    with ``CFGScaledModel(model, w, null_label=num_classes)``. The input is not modified.

    Args:
        labels: labels of shape ``[B, ...]`` (class indices ``[B]``, or embeddings ``[B, D]``).
        p: drop probability in $[0, 1]$ (0.1 to 0.2 is usual).
        null_label: the "no label" value: an int, a float, or a tensor broadcasting to one
            sample's label.
        generator: a ``torch.Generator`` on the labels' device, for reproducible drops.
        return_mask: also return the ``[B]`` bool mask of dropped samples.

    Returns:
        The labels with dropped entries replaced, same shape and dtype; and the mask if asked.

    Example:
        >>> y = torch.tensor([3, 1, 4, 1, 5])
        >>> drop_labels(y, 0.0, null_label=10)
        tensor([3, 1, 4, 1, 5])
    """
    check_tensor(labels, "labels")
    if labels.ndim == 0:
        raise ValueError("labels must have a batch dimension, shape [B, ...]; got a 0-dim tensor")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    check_null_label(null_label)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    null = null_like(labels, null_label)
    u = torch.rand(labels.shape[0], device=labels.device, generator=generator)
    mask = u < p
    out = torch.where(mask.reshape(-1, *([1] * (labels.ndim - 1))), null, labels)
    return (out, mask) if return_mask else out
