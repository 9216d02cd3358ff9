"""Generalized-KL loss of a mixture path from logits, by an online softmax over vocabulary chunks.

Per token (row) the kernel makes two passes over the row's ``V`` logits: an online logsumexp
(running max and rescaled sum, Milakov & Gimelshein 2018), then a gradient pass that writes
$\\partial L / \\partial\\,\\text{logits}$ in the logits' dtype, optionally over the logits
themselves (what :func:`fm_kernels.generalized_kl_linear` does with its temporary chunk). Eager
torch holds ``log_softmax`` and its gradient as further ``[N, V]`` fp32 tensors; the kernel holds
none (3 passes over the logits instead of about 9, see docs/fm-kernels.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fm_kernels import reference
from fm_kernels._dispatch import (
    REDUCTIONS,
    check_choice,
    check_floating,
    check_integer,
    check_nonempty,
    checks_enabled,
    compute_dtype,
    get_value_checks,
    select_backend,
    tl,
    tl_dtype,
    to_storage,
    triton,
    unit_grad_output,
)

__all__ = ["check_generalized_kl_args", "generalized_kl", "generalized_kl_rows"]

# 8192 logits per chunk: V = 50257 takes 7 chunks; 16 warps keep this at 16 fp32 registers per
# thread per live vector, below spilling, as Liger's cross-entropy (which goes to 32768) shows.
_MAX_BLOCK_V = 8192


@triton.jit
def _generalized_kl_fwd_kernel(
    logits_ptr,
    grad_ptr,
    x1_ptr,
    xt_ptr,
    jump_ptr,
    row_scale_ptr,
    loss_ptr,
    V,
    stride_row,
    mean_n,
    HAS_ROW_SCALE: tl.constexpr,
    STORE_GRAD: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    row_logits = logits_ptr + row * stride_row
    # Pass 1: online logsumexp in COMPUTE (the interpreter gets bf16 arithmetic wrong; fp32 anyway).
    m = tl.full([], float("-inf"), COMPUTE)
    s = tl.zeros([], COMPUTE)
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(row_logits + cols, mask=cols < V, other=float("-inf")).to(COMPUTE)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    lse = m + tl.log(s)

    x1 = tl.load(x1_ptr + row).to(tl.int64)
    xt = tl.load(xt_ptr + row).to(tl.int64)
    jump = tl.load(jump_ptr + row).to(COMPUTE)
    log_p_x1 = tl.load(row_logits + x1).to(COMPUTE) - lse
    p_xt = tl.exp(tl.load(row_logits + xt).to(COMPUTE) - lse)
    not_same = (x1 != xt).to(COMPUTE)
    # where(), not (1 - δ) log p(x_1): log p(x_1) may be -inf exactly where δ = 1.
    inner = tl.where(x1 == xt, p_xt - 1.0, p_xt + log_p_x1)
    tl.store(loss_ptr + row, -jump * inner)

    if STORE_GRAD:
        # dL/dl_v = -j [p(x_t)(δ_{v,x_t} - p_v) + (1 - δ)(δ_{v,x_1} - p_v)], times the reduction's
        # scale (1/N for mean) and, for reduction="none" in backward, grad_output[row].
        n = tl.full([], 1, tl.int64) * mean_n
        scale = jump / n.to(COMPUTE)
        if HAS_ROW_SCALE:
            scale = scale * tl.load(row_scale_ptr + row).to(COMPUTE)
        coef_p = scale * (p_xt + not_same)
        coef_xt = -scale * p_xt
        coef_x1 = -scale * not_same
        row_grad = grad_ptr + row * stride_row
        # Pass 2: re-read each chunk (it may be overwritten in place right after).
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            mask = cols < V
            x = tl.load(row_logits + cols, mask=mask, other=0.0).to(COMPUTE)
            g = coef_p * tl.exp(x - lse)
            g += tl.where(cols == xt, coef_xt, 0.0) + tl.where(cols == x1, coef_x1, 0.0)
            tl.store(row_grad + cols, to_storage(g, grad_ptr), mask=mask)


def generalized_kl_rows(
    logits: Tensor,
    x_1: Tensor,
    x_t: Tensor,
    jump_coefficient: Tensor,
    *,
    grad: Tensor | None,
    mean_n: int,
    row_scale: Tensor | None = None,
    block_size: int | None = None,
) -> Tensor:
    """Launch the kernel: per-row losses ``[N]`` (fp32/fp64), and the scaled gradient into ``grad``.

    Args:
        logits: ``[N, V]`` with unit column stride.
        x_1: ``[N]`` token ids.
        x_t: ``[N]`` token ids.
        jump_coefficient: ``[N]``.
        grad: ``[N, V]`` output with ``logits``' row stride (may be ``logits`` itself), or ``None``.
        mean_n: gradient divisor (``N`` for a mean, 1 for a sum).
        row_scale: optional ``[N]`` per-row gradient multiplier (``grad_output`` of ``"none"``).
        block_size: vocabulary chunk (power of two); ``None`` picks up to 8192.

    Returns:
        ``[N]`` per-token losses.
    """
    n, v = logits.shape
    dtype = compute_dtype(logits, jump_coefficient)
    loss = torch.empty(n, device=logits.device, dtype=dtype)
    if n == 0:
        return loss
    block = block_size or min(_MAX_BLOCK_V, triton.next_power_of_2(v))
    _generalized_kl_fwd_kernel[(n,)](
        logits,
        grad if grad is not None else logits,
        x_1,
        x_t,
        jump_coefficient,
        row_scale if row_scale is not None else jump_coefficient,
        loss,
        v,
        logits.stride(0),
        mean_n,
        HAS_ROW_SCALE=row_scale is not None,
        STORE_GRAD=grad is not None,
        COMPUTE=tl_dtype(dtype),
        BLOCK_V=block,
        num_warps=16 if block >= 8192 else 8 if block >= 2048 else 4,
    )
    return loss


class GeneralizedKLFunction(torch.autograd.Function):
    """Autograd wrapper: the forward kernel writes d(loss)/d(logits); backward rescales it."""

    @staticmethod
    def forward(ctx, logits, x_1, x_t, jump_coefficient, reduction, block_size):
        n = logits.shape[0]
        grad = torch.empty_like(logits) if ctx.needs_input_grad[0] else None
        mean_n = n if reduction == "mean" else 1
        loss = generalized_kl_rows(
            logits,
            x_1,
            x_t,
            jump_coefficient,
            grad=grad,
            mean_n=max(mean_n, 1),
            block_size=block_size,
        )
        ctx.save_for_backward(grad)
        ctx.reduction = reduction
        if reduction == "mean":
            return loss.mean()
        return loss.sum() if reduction == "sum" else loss

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        if grad is None:
            return None, None, None, None, None, None
        if ctx.reduction == "none":
            grad = grad * grad_output.to(grad.dtype)[:, None]
        elif not unit_grad_output(grad_output):
            grad = grad * grad_output.to(grad.dtype)
        return grad, None, None, None, None, None


def check_generalized_kl_args(n: int, v: int, x_1, x_t, jump_coefficient, reduction, like):
    """Validate the token/coefficient arguments shared by both generalized-KL entry points."""
    check_choice("reduction", reduction, REDUCTIONS)
    for name, x in (("x_1", x_1), ("x_t", x_t)):
        check_integer(name, x)
        if x.shape != (n,):
            raise ValueError(f"{name} must have shape [N] = [{n}], got {tuple(x.shape)}")
        if x.device != like.device:
            raise ValueError(f"{name} is on {x.device}, expected {like.device}")
        # An out-of-range id would read outside the row. Eager CPU: a clear error (a value
        # check, see checks_enabled); eager accelerator: a device-side assert, no host sync.
        if n and checks_enabled(x):
            if bool(((x < 0) | (x >= v)).any()):
                raise ValueError(
                    f"{name} must hold token ids in [0, {v}), got min {int(x.min())}, "
                    f"max {int(x.max())}"
                )
        elif (
            n
            and x.device.type != "cpu"
            and get_value_checks() != "off"
            and not torch.compiler.is_compiling()
        ):
            torch._assert_async(
                ((x >= 0) & (x < v)).all(), f"{name} holds a token id outside [0, {v})"
            )
    check_floating("jump_coefficient", jump_coefficient)
    if jump_coefficient.shape != (n,):
        raise ValueError(
            f"jump_coefficient must have shape [N] = [{n}], got {tuple(jump_coefficient.shape)}"
        )
    if jump_coefficient.device != like.device:
        raise ValueError(
            f"jump_coefficient is on {jump_coefficient.device}, expected {like.device}"
        )


def generalized_kl(
    logits: Tensor,
    x_1: Tensor,
    x_t: Tensor,
    jump_coefficient: Tensor,
    *,
    reduction: str = "mean",
    backend: str = "auto",
    block_size: int | None = None,
) -> Tensor:
    """Fused generalized-KL loss of a mixture path, differentiable w.r.t. ``logits``.

    Per token $-j\\,(p(x_t) - \\delta_{x_1 x_t} + (1 - \\delta_{x_1 x_t}) \\log p(x_1))$ with
    $p = \\mathrm{softmax}(\\text{logits})$. The forward kernel computes the loss and the gradient
    in one launch (online softmax over vocabulary chunks); the gradient is stored in the logits'
    dtype, so no second ``[N, V]`` fp32 tensor exists. ``jump_coefficient`` gets no gradient.

    Args:
        logits: ``[N, V]``, fp16/bf16/fp32/fp64.
        x_1: ``[N]`` integer target tokens in ``[0, V)``.
        x_t: ``[N]`` integer current tokens in ``[0, V)``.
        jump_coefficient: ``[N]``, $\\dot\\kappa_t / (1 - \\kappa_t)$.
        reduction: ``"mean"`` (gradient scale $1/N$), ``"sum"`` or ``"none"`` (``[N]``).
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (see :func:`fm_kernels.fm_loss`).
        block_size: vocabulary chunk per loop step (a power of two); ``None`` picks up to 8192.

    Returns:
        fp32 (fp64 for fp64 inputs) scalar, or ``[N]`` for ``reduction="none"``.

    Raises:
        ValueError: bad shapes, out-of-range token ids, bad ``reduction``/``backend``.
        TypeError: non-floating logits or non-integer tokens.

    Example:
        >>> import torch, fm_kernels
        >>> logits = torch.randn(6, 11, requires_grad=True)
        >>> x_1, x_t = torch.randint(0, 11, (2, 6))
        >>> fm_kernels.generalized_kl(logits, x_1, x_t, torch.rand(6)).backward()
    """
    check_floating("logits", logits)
    if logits.dim() != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must have shape [N, V] with V > 0, got {tuple(logits.shape)}")
    n, v = logits.shape
    check_nonempty("logits", n)
    check_generalized_kl_args(n, v, x_1, x_t, jump_coefficient, reduction, logits)
    if block_size is not None and (block_size < 16 or block_size & (block_size - 1)):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    if select_backend(backend, logits, x_1, x_t, name="generalized_kl") == "torch":
        return reference.generalized_kl(logits, x_1, x_t, jump_coefficient, reduction=reduction)
    return GeneralizedKLFunction.apply(
        logits.contiguous(),
        x_1.contiguous(),
        x_t.contiguous(),
        jump_coefficient.contiguous(),
        reduction,
        block_size,
    )
