"""Affine interpolation $x_t = \\sigma_t x_0 + \\alpha_t x_1$ and its time derivative in one pass.

Eager torch reads ``x_0`` and ``x_1`` once per product and writes two intermediates per output
(about 8 passes for ``x_t`` plus ``dx_t``); the kernel reads both once and writes both outputs
once (4 passes), with the ``[B]`` coefficients gathered per element from cache.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fm_kernels import reference
from fm_kernels._dispatch import (
    as_batch_vector,
    check_floating,
    check_nonempty,
    compute_dtype,
    resolve_backend,
    tl,
    tl_dtype,
    to_storage,
    triton,
)

__all__ = ["affine_interpolate"]

# 1024 elements per program: a pure streaming kernel saturates bandwidth at this size already.
_BLOCK = 1024


@triton.jit
def _affine_interpolate_fwd_kernel(
    x0_ptr,
    x1_ptr,
    alpha_ptr,
    sigma_ptr,
    d_alpha_ptr,
    d_sigma_ptr,
    xt_ptr,
    dxt_ptr,
    numel,
    D,
    HAS_DERIVATIVE: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    row = offs // D
    x0 = tl.load(x0_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    x1 = tl.load(x1_ptr + offs, mask=mask, other=0.0).to(COMPUTE)
    alpha = tl.load(alpha_ptr + row, mask=mask, other=0.0).to(COMPUTE)
    sigma = tl.load(sigma_ptr + row, mask=mask, other=0.0).to(COMPUTE)
    tl.store(xt_ptr + offs, to_storage(sigma * x0 + alpha * x1, xt_ptr), mask=mask)
    if HAS_DERIVATIVE:
        d_alpha = tl.load(d_alpha_ptr + row, mask=mask, other=0.0).to(COMPUTE)
        d_sigma = tl.load(d_sigma_ptr + row, mask=mask, other=0.0).to(COMPUTE)
        dxt = d_sigma * x0 + d_alpha * x1
        tl.store(dxt_ptr + offs, to_storage(dxt, dxt_ptr), mask=mask)


def _launch(x_0, x_1, coeffs, has_derivative, block_size):
    out_dtype = torch.promote_types(x_0.dtype, x_1.dtype)
    x_t = torch.empty(x_0.shape, device=x_0.device, dtype=out_dtype)
    dx_t = torch.empty_like(x_t) if has_derivative else None
    numel = x_t.numel()
    if numel == 0:
        return x_t, dx_t
    block = block_size or _BLOCK
    alpha, sigma, d_alpha, d_sigma = coeffs
    _affine_interpolate_fwd_kernel[(triton.cdiv(numel, block),)](
        x_0,
        x_1,
        alpha,
        sigma,
        d_alpha if has_derivative else alpha,
        d_sigma if has_derivative else sigma,
        x_t,
        dx_t if has_derivative else x_t,
        numel,
        math.prod(x_0.shape[1:]),
        HAS_DERIVATIVE=has_derivative,
        COMPUTE=tl_dtype(compute_dtype(x_0, x_1, *[c for c in coeffs if c is not None])),
        BLOCK=block,
    )
    return x_t, dx_t


class AffineInterpolateFunction(torch.autograd.Function):
    """Forward by the kernel; backward to ``x_0``/``x_1`` is one more fused launch of the same
    kernel (the adjoint of $[x_t, \\dot x_t]$ is again an affine combination of the two grads)."""

    @staticmethod
    def forward(ctx, x_0, x_1, alpha, sigma, d_alpha, d_sigma, block_size):
        has_derivative = d_alpha is not None
        ctx.save_for_backward(alpha, sigma, d_alpha, d_sigma)
        ctx.dtypes, ctx.block_size = (x_0.dtype, x_1.dtype), block_size
        return _launch(x_0, x_1, (alpha, sigma, d_alpha, d_sigma), has_derivative, block_size)

    @staticmethod
    def backward(ctx, grad_xt, grad_dxt):
        alpha, sigma, d_alpha, d_sigma = ctx.saved_tensors
        b = grad_xt.shape[0]
        shape = (b, *([1] * (grad_xt.dim() - 1)))
        gx0 = sigma.view(shape) * grad_xt
        gx1 = alpha.view(shape) * grad_xt
        if grad_dxt is not None and d_alpha is not None:
            gx0 = gx0 + d_sigma.view(shape) * grad_dxt
            gx1 = gx1 + d_alpha.view(shape) * grad_dxt
        gx0 = gx0.to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        gx1 = gx1.to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        return gx0, gx1, None, None, None, None, None


def affine_interpolate(
    x_0: Tensor,
    x_1: Tensor,
    alpha_t: Tensor,
    sigma_t: Tensor,
    d_alpha_t: Tensor | None = None,
    d_sigma_t: Tensor | None = None,
    *,
    backend: str = "auto",
    block_size: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Sample an affine path: $x_t = \\sigma_t x_0 + \\alpha_t x_1$, $\\dot x_t = \\dot\\sigma_t x_0 + \\dot\\alpha_t x_1$.

    One kernel reads ``x_0`` and ``x_1`` once and writes both outputs. Differentiable w.r.t.
    ``x_0`` and ``x_1``; the coefficients are treated as constants.

    Args:
        x_0: source samples, ``[B, ...]``.
        x_1: target samples, ``[B, ...]`` (same shape).
        alpha_t: ``[B]`` (or ``[B, 1, ...]``).
        sigma_t: ``[B]``.
        d_alpha_t: ``[B]`` or ``None``.
        d_sigma_t: ``[B]`` or ``None`` (give both derivatives or neither).
        backend: ``"auto"``, ``"torch"`` or ``"triton"`` (see :func:`fm_kernels.fm_loss`).
        block_size: elements per program (a power of two); ``None`` means 1024.

    Returns:
        ``(x_t, dx_t)``: ``[B, ...]`` each, in the promoted dtype of ``x_0`` and ``x_1``;
        ``dx_t`` is ``None`` without derivatives.

    Example:
        >>> import torch, fm_kernels
        >>> x_0, x_1 = torch.randn(2, 4, 3, 8, 8).unbind(0)
        >>> t = torch.rand(4)
        >>> x_t, dx_t = fm_kernels.affine_interpolate(x_0, x_1, t, 1 - t, torch.ones(4), -torch.ones(4))
    """
    check_floating("x_0", x_0)
    check_floating("x_1", x_1)
    if x_0.dim() < 1 or x_1.shape != x_0.shape:
        raise ValueError(
            f"x_0 and x_1 must have the same shape [B, ...], got {tuple(x_0.shape)} "
            f"and {tuple(x_1.shape)}"
        )
    if x_1.device != x_0.device:
        raise ValueError(f"x_1 is on {x_1.device}, expected {x_0.device}")
    if (d_alpha_t is None) != (d_sigma_t is None):
        raise ValueError("give both d_alpha_t and d_sigma_t, or neither")
    if block_size is not None and (block_size < 16 or block_size & (block_size - 1)):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    b = x_0.shape[0]
    check_nonempty("x_0", b)
    alpha = as_batch_vector("alpha_t", alpha_t, b, x_0)
    sigma = as_batch_vector("sigma_t", sigma_t, b, x_0)
    d_alpha = as_batch_vector("d_alpha_t", d_alpha_t, b, x_0) if d_alpha_t is not None else None
    d_sigma = as_batch_vector("d_sigma_t", d_sigma_t, b, x_0) if d_sigma_t is not None else None
    if resolve_backend(backend, [x_0, x_1], "affine_interpolate") == "torch":
        return reference.affine_interpolate(x_0, x_1, alpha, sigma, d_alpha, d_sigma)
    return AffineInterpolateFunction.apply(
        x_0.contiguous(), x_1.contiguous(), alpha, sigma, d_alpha, d_sigma, block_size
    )
