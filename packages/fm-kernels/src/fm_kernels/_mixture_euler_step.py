"""One Euler step of a mixture-path CTMC sampler: Gumbel-max categorical draw plus a jump test.

Eager torch builds ``softmax(scores)`` in fp64/fp32, the Gumbel noise and their sum as ``[N, V]``
tensors (at N = 8192, V = 50257: 3.3 GB of fp64 each) before an argmax. The kernel draws the
noise in registers and keeps a running (max, argmax) per row over vocabulary chunks, so it reads
the scores once and writes ``[N]`` tokens. Rows that do not jump (probability ``1 - jump_prob``,
usually most of them) skip the vocabulary loop and read nothing but their own token.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fm_kernels import reference
from fm_kernels._dispatch import (
    check_floating,
    check_integer,
    check_nonempty,
    checks_enabled,
    compute_dtype,
    select_backend,
    tl,
    tl_dtype,
    triton,
)
from fm_kernels._random import check_seed, derived_seed

__all__ = ["mixture_euler_step"]

# 4096 elements per tile (16 KiB of fp32 keys): V = 50257 takes 13 chunks of one row.
_MAX_BLOCK_V = 4096


@triton.jit
def _mixture_euler_step_fwd_kernel(
    scores_ptr,
    xt_ptr,
    jump_ptr,
    out_ptr,
    N,
    V,
    stride_row,
    seed,
    jump_seed,
    SCORES_ARE_LOGITS: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    # A [BLOCK_N, BLOCK_V] tile: one row per program at V = 50257, many rows when V is small.
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_mask = rows < N
    token = tl.load(xt_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    # The jump test uses its own Philox key, so it is independent of the rows' Gumbel noise.
    u_jump = tl.rand(jump_seed, rows).to(COMPUTE)
    jump_prob = tl.load(jump_ptr + rows, mask=row_mask, other=0.0).to(COMPUTE)
    jump = (u_jump < jump_prob) & row_mask
    if tl.max(jump.to(tl.int32), axis=0) > 0:
        best = tl.full([BLOCK_N], float("-inf"), COMPUTE)
        best_idx = tl.zeros([BLOCK_N], tl.int64)
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            # Rows that stay put are masked out of the load: they cost no memory traffic.
            mask = jump[:, None] & (cols < V)[None, :]
            offs = rows[:, None] * stride_row + cols[None, :]
            s = tl.load(scores_ptr + offs, mask=mask, other=1.0).to(COMPUTE)
            if not SCORES_ARE_LOGITS:
                s = tl.log(s)  # argmax(log p + G) ~ Cat(p); normalisation shifts all keys alike
            u = tl.rand(seed, rows[:, None] * V + cols[None, :]).to(COMPUTE)
            # u = 0 gives a key of -inf: that element is never picked, as it should almost surely.
            key = tl.where(mask, s - tl.log(-tl.log(u)), float("-inf"))
            chunk_best = tl.max(key, axis=1)
            chunk_idx = tl.argmax(key, axis=1).to(tl.int64) + start
            best_idx = tl.where(chunk_best > best, chunk_idx, best_idx)
            best = tl.maximum(best, chunk_best)
        token = tl.where(jump, best_idx, token)
    tl.store(out_ptr + rows, token.to(out_ptr.dtype.element_ty), mask=row_mask)


def check_scores(scores: Tensor, scores_are_logits: bool) -> None:
    """Value check of ``scores`` (eager mode on CPU, see ``checks_enabled``): no NaN, and
    probabilities (``scores_are_logits=False``) finite and non-negative; each row needs a positive
    entry. NaN logits would otherwise become token 0 silently."""
    if not checks_enabled(scores):
        return
    # Reductions only (amax/amin propagate NaN): no [N, V] temporaries.
    if scores_are_logits:
        row_max = scores.amax(-1)
        if bool(torch.isnan(row_max).any()) or bool((row_max == float("inf")).any()):
            raise ValueError("scores (logits) must not hold NaN or +inf")
        if bool((row_max == float("-inf")).any()):
            raise ValueError(
                "scores (logits) must have a finite entry in every row, got a row of -inf"
            )
        return
    low, high = scores.amin(), scores.amax()
    if bool(torch.isnan(low)) or bool(low < 0) or bool(high == float("inf")):
        raise ValueError(
            "scores (probabilities, scores_are_logits=False) must be finite and non-negative"
        )
    if bool((scores.amax(-1) <= 0).any()):
        raise ValueError("scores (probabilities) must have a positive entry in every row")


def mixture_euler_step(
    scores: Tensor,
    x_t: Tensor,
    jump_prob: Tensor,
    *,
    seed: int,
    scores_are_logits: bool = True,
    backend: str = "auto",
    block_size: int | None = None,
) -> Tensor:
    """Draw $x_1 \\sim \\mathrm{Cat}(\\mathrm{softmax}(\\text{scores}))$ and jump to it where $U <$ ``jump_prob``.

    The categorical draw is Gumbel-max, $\\arg\\max_v (s_v - \\log(-\\log u_v))$, computed in fp32
    (fp64 for fp64 inputs) online over vocabulary chunks; $u_v$ come from ``tl.rand`` (fp32, so
    Gumbel tails are resolved to about $-\\log(2^{-24})$). The jump draw uses a second, independent
    Philox key. The same ``seed`` gives the same tokens on the same backend.

    Args:
        scores: ``[N, V]`` logits, or non-negative unnormalised probabilities when
            ``scores_are_logits=False``.
        x_t: ``[N]`` current tokens (integer).
        jump_prob: ``[N]`` probability of jumping this step (values outside [0, 1] act clamped).
        seed: int in ``[0, 2**63)``.
        scores_are_logits: whether ``scores`` are logits.
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (see :func:`fm_kernels.fm_loss`).
        block_size: vocabulary chunk (a power of two); ``None`` picks up to 4096.

    Returns:
        ``[N]`` next tokens in ``x_t``'s dtype.
    """
    check_floating("scores", scores)
    if scores.dim() != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores must have shape [N, V] with V > 0, got {tuple(scores.shape)}")
    n, v = scores.shape
    check_integer("x_t", x_t)
    if x_t.shape != (n,):
        raise ValueError(f"x_t must have shape [N] = [{n}], got {tuple(x_t.shape)}")
    check_floating("jump_prob", jump_prob)
    if jump_prob.shape != (n,):
        raise ValueError(f"jump_prob must have shape [N] = [{n}], got {tuple(jump_prob.shape)}")
    for name, x in (("x_t", x_t), ("jump_prob", jump_prob)):
        if x.device != scores.device:
            raise ValueError(f"{name} is on {x.device}, expected {scores.device}")
    check_seed(seed)
    if block_size is not None and (block_size < 16 or block_size & (block_size - 1)):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    check_nonempty("scores", n)
    check_scores(scores, scores_are_logits)
    if select_backend(backend, scores, x_t, name="mixture_euler_step") == "torch":
        return reference.mixture_euler_step(
            scores, x_t, jump_prob, seed=seed, scores_are_logits=scores_are_logits
        )
    scores, x_t, jump_prob = scores.contiguous(), x_t.contiguous(), jump_prob.contiguous()
    out = torch.empty_like(x_t)
    if n == 0:
        return out
    block = block_size or min(_MAX_BLOCK_V, triton.next_power_of_2(v))
    # Rows per program: fill a tile of _MAX_BLOCK_V elements (1 row at V >= 4096).
    block_n = max(1, min(_MAX_BLOCK_V // block, triton.next_power_of_2(n)))
    _mixture_euler_step_fwd_kernel[(triton.cdiv(n, block_n),)](
        scores,
        x_t,
        jump_prob,
        out,
        n,
        v,
        scores.stride(0),
        seed,
        derived_seed(seed),
        SCORES_ARE_LOGITS=bool(scores_are_logits),
        COMPUTE=tl_dtype(compute_dtype(scores, jump_prob)),
        BLOCK_N=block_n,
        BLOCK_V=block,
        num_warps=8 if block >= 2048 else 4,
    )
    return out
