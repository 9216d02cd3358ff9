"""Generalized-KL loss fused with the output projection, chunked over tokens (Liger's FLCE recipe).

For each chunk of ``C`` tokens: ``logits = hidden_chunk @ weight.T (+ bias)`` by a torch matmul,
then the generalized-KL kernel overwrites those logits with their gradient, which two more
matmuls turn into ``grad_hidden[chunk]`` and a contribution to ``grad_weight``. Only a ``[C, V]``
chunk of logits ever exists: at N = 8192, V = 50257 in bf16 the eager path's logits alone are
823 MB, a chunk of C = 1024 is 103 MB.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fm_kernels import reference
from fm_kernels._dispatch import (
    check_floating,
    check_nonempty,
    select_backend,
    triton,
    unit_grad_output,
)
from fm_kernels._generalized_kl import check_generalized_kl_args, generalized_kl_rows

__all__ = ["generalized_kl_linear"]


def _default_chunk_size(n: int, v: int, h: int) -> int:
    # Liger's rule: make a chunk's logits about as large as the hidden states (V/H chunks).
    return max(1, triton.next_power_of_2(max(1, triton.cdiv(n, triton.cdiv(v, h)))))


def _chunked_pass(hidden, weight, bias, x_1, x_t, jump, *, mean_n, row_scale, needs, chunk_size):
    """Loss rows ``[N]`` and, for each flag in ``needs`` (hidden, weight, bias), its gradient."""
    n = hidden.shape[0]
    grad_h = torch.empty_like(hidden) if needs[0] else None
    # fp32 accumulators: summing N / C bf16 partial products in bf16 would lose ~8 bits each.
    acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
    grad_w = torch.zeros(weight.shape, device=weight.device, dtype=acc) if needs[1] else None
    grad_b = torch.zeros(bias.shape, device=bias.device, dtype=acc) if needs[2] else None
    store_grad = any(needs)
    losses = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        h = hidden[start:stop]
        logits = h @ weight.T
        if bias is not None:
            logits += bias
        rs = row_scale[start:stop] if row_scale is not None else None
        losses.append(
            generalized_kl_rows(
                logits,
                x_1[start:stop],
                x_t[start:stop],
                jump[start:stop],
                grad=logits if store_grad else None,
                mean_n=mean_n,
                row_scale=rs,
            )
        )
        if not store_grad:
            continue
        dlogits = logits  # overwritten in place by the kernel
        if grad_h is not None:
            torch.mm(dlogits, weight, out=grad_h[start:stop])
        if grad_w is not None:
            if grad_w.dtype == dlogits.dtype:
                grad_w.addmm_(dlogits.T, h)
            else:
                grad_w += dlogits.T @ h
        if grad_b is not None:
            grad_b += dlogits.sum(dim=0, dtype=acc)
    loss = torch.cat(losses) if losses else hidden.new_zeros(0, dtype=acc)
    return (
        loss,
        grad_h,
        grad_w.to(weight.dtype) if grad_w is not None else None,
        grad_b.to(bias.dtype) if grad_b is not None else None,
    )


class GeneralizedKLLinearFunction(torch.autograd.Function):
    """Mean/sum: gradients are computed in forward and rescaled in backward (one matmul pass).
    ``"none"``: forward computes losses only; backward recomputes each chunk with per-row scales."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, x_1, x_t, jump, reduction, chunk_size):
        n = hidden.shape[0]
        needs = ctx.needs_input_grad[:3]
        ctx.reduction, ctx.chunk_size = reduction, chunk_size
        if reduction == "none":
            loss, *_ = _chunked_pass(
                hidden,
                weight,
                bias,
                x_1,
                x_t,
                jump,
                mean_n=1,
                row_scale=None,
                needs=(False,) * 3,
                chunk_size=chunk_size,
            )
            ctx.save_for_backward(hidden, weight, bias, x_1, x_t, jump)
            return loss
        loss, *grads = _chunked_pass(
            hidden,
            weight,
            bias,
            x_1,
            x_t,
            jump,
            mean_n=max(n, 1) if reduction == "mean" else 1,
            row_scale=None,
            needs=needs,
            chunk_size=chunk_size,
        )
        ctx.save_for_backward(*grads)
        return loss.mean() if reduction == "mean" else loss.sum()

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.reduction == "none":
            hidden, weight, bias, x_1, x_t, jump = ctx.saved_tensors
            _, *grads = _chunked_pass(
                hidden,
                weight,
                bias,
                x_1,
                x_t,
                jump,
                mean_n=1,
                row_scale=grad_output.contiguous(),
                needs=ctx.needs_input_grad[:3],
                chunk_size=ctx.chunk_size,
            )
        else:
            grads = list(ctx.saved_tensors)
            if not unit_grad_output(grad_output):
                grads = [g * grad_output.to(g.dtype) if g is not None else None for g in grads]
        return (*grads, None, None, None, None, None)


def generalized_kl_linear(
    hidden: Tensor,
    weight: Tensor,
    x_1: Tensor,
    x_t: Tensor,
    jump_coefficient: Tensor,
    *,
    bias: Tensor | None = None,
    reduction: str = "mean",
    chunk_size: int | None = None,
    backend: str = "auto",
) -> Tensor:
    """Generalized-KL loss of ``hidden @ weight.T + bias`` without materialising all logits.

    Same loss as :func:`fm_kernels.generalized_kl`; differentiable w.r.t. ``hidden``, ``weight``
    and ``bias``. Tokens are processed ``chunk_size`` at a time, so peak extra memory is one
    ``[chunk_size, V]`` logits chunk (in ``hidden``'s dtype) plus the gradients.

    Args:
        hidden: ``[N, H]`` final hidden states.
        weight: ``[V, H]`` output projection (``nn.Linear(H, V).weight``).
        x_1: ``[N]`` integer target tokens in ``[0, V)``.
        x_t: ``[N]`` integer current tokens in ``[0, V)``.
        jump_coefficient: ``[N]``.
        bias: ``[V]`` or ``None``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        chunk_size: tokens per chunk; ``None`` makes a chunk's logits about as large as
            ``hidden`` (next power of two of $N / \\lceil V / H \\rceil$).
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (see :func:`fm_kernels.fm_loss`).

    Returns:
        fp32 (fp64 for fp64 inputs) scalar, or ``[N]`` for ``reduction="none"``.

    Raises:
        ValueError: bad shapes, dtypes that differ, out-of-range token ids, bad options.
        TypeError: non-floating tensors or non-integer tokens.
    """
    check_floating("hidden", hidden)
    check_floating("weight", weight)
    if hidden.dim() != 2:
        raise ValueError(f"hidden must have shape [N, H], got {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[1] or weight.shape[0] == 0:
        raise ValueError(
            f"weight must have shape [V, H] = [V, {hidden.shape[1]}] with V > 0, "
            f"got {tuple(weight.shape)}"
        )
    if weight.dtype != hidden.dtype or weight.device != hidden.device:
        raise ValueError(
            f"weight ({weight.dtype}, {weight.device}) must match hidden "
            f"({hidden.dtype}, {hidden.device})"
        )
    n, v = hidden.shape[0], weight.shape[0]
    check_nonempty("hidden", n)
    if bias is not None:
        check_floating("bias", bias)
        if bias.shape != (v,) or bias.dtype != hidden.dtype or bias.device != hidden.device:
            raise ValueError(
                f"bias must be a [V] = [{v}] tensor like hidden, got "
                f"{tuple(bias.shape)} {bias.dtype} on {bias.device}"
            )
    check_generalized_kl_args(n, v, x_1, x_t, jump_coefficient, reduction, hidden)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if select_backend(backend, hidden, weight, name="generalized_kl_linear") == "torch":
        return reference.generalized_kl_linear(
            hidden, weight, x_1, x_t, jump_coefficient, bias=bias, reduction=reduction
        )
    chunk = chunk_size or _default_chunk_size(n, v, hidden.shape[1])
    return GeneralizedKLLinearFunction.apply(
        hidden.contiguous(),
        weight.contiguous(),
        bias.contiguous() if bias is not None else None,
        x_1.contiguous(),
        x_t.contiguous(),
        jump_coefficient.contiguous(),
        reduction,
        chunk,
    )
