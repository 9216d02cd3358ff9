"""Mixture-path sampling of token tensors: $x_t = x_1$ where $U < \\kappa_t$, else $x_0$.

Eager torch materialises ``U`` (4 bytes per token), a boolean mask and the broadcast
$\\kappa_t$; the kernel draws ``U`` in registers from Philox (``tl.rand(seed, offset)``), so it
moves only ``x_0``, ``x_1`` in and ``x_t`` out.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fm_kernels import reference
from fm_kernels._dispatch import (
    as_batch_vector,
    check_integer,
    check_nonempty,
    compute_dtype,
    resolve_backend,
    tl,
    tl_dtype,
    triton,
)
from fm_kernels._random import check_seed

__all__ = ["mixture_sample"]

_BLOCK = 1024


@triton.jit
def _mixture_sample_fwd_kernel(
    x0_ptr,
    x1_ptr,
    kappa_ptr,
    out_ptr,
    numel,
    D,
    seed,
    COMPUTE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    kappa = tl.load(kappa_ptr + offs // D, mask=mask, other=0.0).to(COMPUTE)
    # int64 offsets: one Philox counter per element, no wrap-around below 2**64 elements.
    u = tl.rand(seed, offs).to(COMPUTE)
    x0 = tl.load(x0_ptr + offs, mask=mask, other=0)
    x1 = tl.load(x1_ptr + offs, mask=mask, other=0)
    out = tl.where(u < kappa, x1, x0.to(x1.dtype))
    tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)


def mixture_sample(
    x_0: Tensor,
    x_1: Tensor,
    kappa_t: Tensor,
    *,
    seed: int,
    backend: str = "auto",
    block_size: int | None = None,
) -> Tensor:
    """Sample the mixture path $p_t(x \\mid x_0, x_1) = \\kappa_t \\delta_{x_1} + (1 - \\kappa_t) \\delta_{x_0}$ per token.

    The same ``seed`` gives the same tokens on the same backend; the torch fallback draws from a
    ``torch.Generator`` and so gives different tokens (same distribution).

    Args:
        x_0: source tokens, integer ``[B, ...]``.
        x_1: target tokens, integer ``[B, ...]``.
        kappa_t: ``[B]`` (or ``[B, 1, ...]``) probability of taking ``x_1``.
        seed: int in ``[0, 2**63)``, the Philox key.
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (see :func:`fm_kernels.fm_loss`).
        block_size: elements per program (a power of two); ``None`` means 1024.

    Returns:
        ``[B, ...]`` tokens in ``x_1``'s dtype.
    """
    check_integer("x_0", x_0)
    check_integer("x_1", x_1)
    if x_0.dim() < 1 or x_1.shape != x_0.shape:
        raise ValueError(
            f"x_0 and x_1 must have the same shape [B, ...], got {tuple(x_0.shape)} "
            f"and {tuple(x_1.shape)}"
        )
    if x_1.device != x_0.device:
        raise ValueError(f"x_1 is on {x_1.device}, expected {x_0.device}")
    check_seed(seed)
    if block_size is not None and (block_size < 16 or block_size & (block_size - 1)):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    check_nonempty("x_0", x_0.shape[0])
    kappa = as_batch_vector("kappa_t", kappa_t, x_0.shape[0], x_0)
    if resolve_backend(backend, [x_0, x_1], "mixture_sample") == "torch":
        return reference.mixture_sample(x_0, x_1, kappa, seed=seed)
    x_0, x_1 = x_0.contiguous(), x_1.contiguous()
    out = torch.empty_like(x_1)
    if out.numel() == 0:
        return out
    block = block_size or _BLOCK
    _mixture_sample_fwd_kernel[(triton.cdiv(out.numel(), block),)](
        x_0,
        x_1,
        kappa,
        out,
        out.numel(),
        math.prod(x_0.shape[1:]),
        seed,
        COMPUTE=tl_dtype(compute_dtype(kappa)),
        BLOCK=block,
    )
    return out
