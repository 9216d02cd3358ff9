r"""Source distributions $p_0$ over the vocabulary and helpers to draw $x_0$.

Three kinds of source are common: a *mask* token (every position starts masked: $p_0 = \delta_m$),
the *uniform* distribution, or any given distribution. Each is described by a probability vector
of shape ``[V]`` (what ``MixtureDiscreteEulerSolver`` takes as ``source_distribution_p``).

Convention for masks: data tokens are ``0 .. V_data - 1`` and the mask token is an extra id,
usually ``V_data``, so the model's vocabulary has ``V = V_data + 1`` entries.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fm_discrete._checks import check_probabilities, check_tokens, check_vocabulary_size

__all__ = ["mask_like", "mask_source_p", "sample_source", "uniform_source_p"]


def _check_mask_token(mask_token: object, vocabulary_size: int) -> int:
    if isinstance(mask_token, bool) or not isinstance(mask_token, int):
        raise TypeError(f"mask_token must be an int, got {type(mask_token).__name__}")
    if not 0 <= mask_token < vocabulary_size:
        raise ValueError(
            f"mask_token must be an id of the model vocabulary [0, {vocabulary_size}), got {mask_token}"
        )
    return mask_token


def mask_source_p(
    vocabulary_size: int, mask_token: int, *, data_vocabulary_size: int | None = None
) -> Tensor:
    r"""$p_0 = \delta_m$: the one-hot vector of the mask token, shape ``[vocabulary_size]``.

    Args:
        vocabulary_size: size $V$ of the model vocabulary, mask included.
        mask_token: the mask id $m$, in ``[0, V)``.
        data_vocabulary_size: if given, data ids are ``[0, data_vocabulary_size)`` and the mask
            must lie outside that range (a mask that is also a data token breaks the path).

    Example:
        >>> mask_source_p(4, 3)
        tensor([0., 0., 0., 1.])
    """
    check_vocabulary_size(vocabulary_size)
    _check_mask_token(mask_token, vocabulary_size)
    if data_vocabulary_size is not None and mask_token < data_vocabulary_size:
        raise ValueError(
            f"mask_token={mask_token} lies inside the data vocabulary [0, {data_vocabulary_size}); "
            f"use an id >= data_vocabulary_size, e.g. {data_vocabulary_size}"
        )
    p = torch.zeros(vocabulary_size)
    p[mask_token] = 1.0
    return p


def uniform_source_p(vocabulary_size: int) -> Tensor:
    """The uniform distribution over ``vocabulary_size`` tokens, shape ``[vocabulary_size]``.

    Example:
        >>> uniform_source_p(4)
        tensor([0.2500, 0.2500, 0.2500, 0.2500])
    """
    check_vocabulary_size(vocabulary_size)
    return torch.full((vocabulary_size,), 1.0 / vocabulary_size)


def sample_source(
    p: Tensor,
    shape: tuple[int, ...] | torch.Size,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw source tokens $x_0 \\sim p_0$ independently per position.

    Args:
        p: source probabilities, shape ``[V]``, non-negative, summing to one.
        shape: shape of the result, e.g. ``(B, L)``.
        device: device of the result (``p``'s device by default).
        generator: optional ``torch.Generator`` (on ``p``'s device).

    Returns:
        Long tensor of ``shape`` with ids in ``[0, V)``.

    Example:
        >>> sample_source(uniform_source_p(10), (2, 5)).shape
        torch.Size([2, 5])
    """
    check_probabilities(p, "p")
    if p.ndim != 1:
        raise ValueError(f"p must have shape [V], got {tuple(p.shape)}")
    n = 1
    for s in shape:
        n *= int(s)
    if n == 0:
        return torch.empty(tuple(shape), dtype=torch.long, device=device or p.device)
    x = torch.multinomial(p.double(), n, replacement=True, generator=generator)
    return x.reshape(tuple(shape)).to(device or p.device)


def mask_like(x_1: Tensor, mask_token: int, *, data_vocabulary_size: int | None = None) -> Tensor:
    """A tensor of ``mask_token`` of the shape of ``x_1`` (the source sample of a mask source).

    Raises ``ValueError`` if ``x_1`` already holds ``mask_token`` (or ids >= ``data_vocabulary_size``
    when given, which would collide with a mask placed after the data vocabulary).

    Example:
        >>> mask_like(torch.tensor([[1, 2]]), 5)
        tensor([[5, 5]])
    """
    check_tokens(x_1, "x_1", data_vocabulary_size)
    if isinstance(mask_token, bool) or not isinstance(mask_token, int) or mask_token < 0:
        raise TypeError(f"mask_token must be a non-negative int, got {mask_token!r}")
    if data_vocabulary_size is not None and mask_token < data_vocabulary_size:
        raise ValueError(
            f"mask_token={mask_token} lies inside the data vocabulary [0, {data_vocabulary_size})"
        )
    if bool((x_1 == mask_token).any()):
        raise ValueError(f"x_1 already contains the mask token {mask_token}")
    return torch.full_like(x_1, mask_token)
