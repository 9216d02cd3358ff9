"""Broadcasting helpers: per-sample scalars against batched tensors of any shape."""

from __future__ import annotations

from torch import Tensor

__all__ = ["expand_tensor_like", "unsqueeze_to_match"]


def unsqueeze_to_match(source: Tensor, target: Tensor, how: str = "suffix") -> Tensor:
    """Add singleton dimensions to ``source`` until it has as many dimensions as ``target``.

    Args:
        source: tensor of shape ``[*s]`` with ``source.ndim <= target.ndim``.
        target: tensor whose number of dimensions is matched.
        how: ``"suffix"`` appends the new dimensions (``[B] -> [B, 1, 1]``), ``"prefix"`` prepends them.

    Returns:
        A view of ``source`` with ``target.ndim`` dimensions.

    Example:
        >>> unsqueeze_to_match(torch.zeros(4), torch.zeros(4, 3, 8, 8)).shape
        torch.Size([4, 1, 1, 1])
    """
    if how not in ("suffix", "prefix"):
        raise ValueError(f"how must be 'suffix' or 'prefix', got {how!r}")
    extra = target.ndim - source.ndim
    if extra < 0:
        raise ValueError(f"source has more dimensions ({source.ndim}) than target ({target.ndim})")
    if how == "suffix":
        return source.reshape(*source.shape, *([1] * extra))
    return source.reshape(*([1] * extra), *source.shape)


def expand_tensor_like(input_tensor: Tensor, expand_to: Tensor) -> Tensor:
    """Broadcast a per-sample tensor of shape ``[B]`` to the shape of ``expand_to``, ``[B, ...]``.

    Args:
        input_tensor: tensor of shape ``[B]`` (or a 0-dim tensor).
        expand_to: tensor of shape ``[B, ...]``.

    Returns:
        An expanded view (no copy) of shape ``expand_to.shape``.
    """
    if input_tensor.ndim > 1:
        raise ValueError(
            f"input_tensor must have shape [B] or be a scalar, got {tuple(input_tensor.shape)}"
        )
    if input_tensor.ndim == 1 and input_tensor.shape[0] not in (1, expand_to.shape[0]):
        raise ValueError(
            f"input_tensor has {input_tensor.shape[0]} entries but expand_to has batch size "
            f"{expand_to.shape[0]}"
        )
    return unsqueeze_to_match(input_tensor, expand_to).expand_as(expand_to)
