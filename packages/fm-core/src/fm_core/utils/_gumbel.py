r"""The one Gumbel-max sampler of the torch paths: chunked, in a chosen precision, sync-free.

``fm_core.utils.categorical`` (the reference's name) and fm-discrete's Euler step both draw with
:func:`gumbel_argmax`. Memory: the ``[N, V]`` scores are read, never copied whole; the noise is
drawn in chunks of about $2^{22}$ entries (32 MiB in float64), so a draw adds O(N) plus one chunk.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CHUNK_ELEMENTS", "gumbel_argmax"]

#: Entries of Gumbel noise per chunk: 2**22 float64 = 32 MiB, about 83 rows of a 50 257-token vocabulary.
CHUNK_ELEMENTS = 1 << 22


def gumbel_argmax(
    scores: Tensor,
    *,
    scores_are_logits: bool = True,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    rows: Tensor | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Tensor:
    r"""One categorical draw per row of ``scores`` (``[N, V]``) by Gumbel-max in ``dtype``.

    Logits: $\arg\max_v \, s_v - \log E_v$; probabilities (need not be normalised):
    $\arg\max_v \, p_v / E_v$, with $E_v \sim \mathrm{Exp}(1)$ drawn in ``dtype`` (the same draw:
    $-\log E$ is Gumbel). The probability form needs no logarithm of $p$ and never selects a
    zero-probability entry. Float32 noise truncates small probabilities (over a 50k-token
    vocabulary the tail is visibly mis-sampled), hence the float64 default.

    Args:
        scores: ``[N, V]`` logits, or non-negative unnormalised probabilities.
        scores_are_logits: whether ``scores`` are logits (else probabilities).
        dtype: precision of the noise and of the comparison.
        generator: optional ``torch.Generator`` for reproducible draws.
        rows: optional long index ``[n]``: draw only for these rows (gathered chunk by chunk).
        chunk_elements: noise entries per chunk.

    Returns:
        Long tensor ``[n]`` (``[N]`` without ``rows``) with values in ``[0, V)``.
    """
    vocab = scores.shape[-1]
    n = scores.shape[0] if rows is None else rows.numel()
    out = torch.empty(n, dtype=torch.long, device=scores.device)
    step = max(1, chunk_elements // max(vocab, 1))
    tiny = torch.finfo(dtype).tiny
    for start in range(0, n, step):
        if rows is None:
            s = scores[start : start + step]
        else:
            # Advanced indexing, not index_select: index_select copies element by element on CPU
            # (0.57 s for 83 rows of 50 257 floats, measured; indexing takes milliseconds).
            s = scores[rows[start : start + step]]
        # E = -log U: uniform_ + log_ is 2.4x faster than exponential_ on CPU (8 vs 19.5 ns/entry).
        e = torch.empty(s.shape, dtype=dtype, device=s.device).uniform_(generator=generator)
        e.clamp_min_(tiny).log_().neg_().clamp_min_(tiny)
        if scores_are_logits:
            e.log_().neg_().add_(s)  # s - log E = s + Gumbel, in place in the float64 buffer
        else:
            e.reciprocal_().mul_(s)  # p / E
        out[start : start + step] = e.argmax(dim=-1)
    return out
