r"""One mixture Euler step on flat tensors: the torch twin of ``fm_kernels.mixture_euler_step``.

Each row $n$ draws $x_1 \sim \mathrm{Cat}(\text{scores}_n)$ by Gumbel-max (fm-core's one sampler,
``fm_core.ext.gumbel_argmax``: the ``[N, V]`` scores are read, never copied whole, the noise comes in
chunks of about 32 MiB) and jumps to it where $U_n < \text{jump\_prob}_n$.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fm_core.ext import gumbel_argmax

__all__ = ["mixture_euler_step_torch"]


def mixture_euler_step_torch(
    scores: Tensor,
    x_t: Tensor,
    jump_prob: Tensor,
    *,
    generator: torch.Generator | None = None,
    scores_are_logits: bool = True,
    dtype: torch.dtype = torch.float64,
    sparse: bool | None = None,
    return_jumped: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Jump each row of ``x_t`` to a draw from its posterior with probability ``jump_prob``.

    Args:
        scores: posterior logits or probabilities, ``[N, V]``.
        x_t: current ids, ``[N]``.
        jump_prob: per-row jump probability in $[0, 1]$, ``[N]``.
        generator: optional ``torch.Generator``.
        scores_are_logits: whether ``scores`` are logits (else probabilities).
        dtype: precision of the Gumbel-max draw (float64 by default).
        sparse: draw $x_1$ only for the rows that jump. This selects rows by index, which reads
            their count back to the host; the default (``None``) does it in eager mode on CPU only,
            where there is no device to wait for, and draws densely without synchronising on
            accelerators and under ``torch.compile``.
        return_jumped: also return the boolean ``[N]`` mask of rows that jumped.

    Returns:
        ``x_next`` ``[N]`` (and the jump mask when ``return_jumped``).
    """
    if sparse is None:  # never while compiling: the row count is data-dependent (graph break)
        sparse = scores.device.type == "cpu" and not torch.compiler.is_compiling()
    u = torch.rand(x_t.shape, dtype=torch.float64, device=x_t.device, generator=generator)
    jumped = u < jump_prob
    kw = dict(scores_are_logits=scores_are_logits, dtype=dtype, generator=generator)
    if sparse:
        idx = jumped.nonzero().squeeze(-1)
        x_next = x_t.clone()
        if idx.numel():
            x_next[idx] = gumbel_argmax(scores, rows=idx, **kw)
    else:
        x_next = torch.where(jumped, gumbel_argmax(scores, **kw), x_t)
    return (x_next, jumped) if return_jumped else x_next
