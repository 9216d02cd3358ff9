"""Pure-torch references, one per kernel, with the kernels' signatures.

Clarity beats cleverness here: every reference upcasts to fp32 (fp64 when an input is fp64),
materialises whatever it needs, and is what the kernels are tested against. ``upcast=False``
computes in the inputs' own dtype instead; the tests use it to measure how far plain torch in
bf16 lands from the fp32 answer (flash-attention's three-way tolerance).

The random references (:func:`mixture_sample`, :func:`mixture_euler_step`) draw from
``torch.Generator(...).manual_seed(seed)``: the same distribution as the kernels' Philox
streams (``tl.rand``), not the same numbers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "affine_interpolate",
    "fm_loss",
    "generalized_kl",
    "generalized_kl_linear",
    "mixture_euler_step",
    "mixture_sample",
]


def _compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    present = [t for t in tensors if t is not None]
    return torch.float64 if any(t.dtype == torch.float64 for t in present) else torch.float32


def _per_sample(c: Tensor, like: Tensor, dtype: torch.dtype) -> Tensor:
    """``[B]`` (or ``[B, 1, ...]``) coefficient -> ``[B, 1, ..., 1]`` broadcastable against ``like``."""
    return c.to(dtype).reshape(-1, *([1] * (like.dim() - 1)))


def _reduce(per_token: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_token.mean()
    if reduction == "sum":
        return per_token.sum()
    return per_token


def affine_interpolate(
    x_0: Tensor,
    x_1: Tensor,
    alpha_t: Tensor,
    sigma_t: Tensor,
    d_alpha_t: Tensor | None = None,
    d_sigma_t: Tensor | None = None,
    *,
    upcast: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """$x_t = \\sigma_t x_0 + \\alpha_t x_1$ and $\\dot x_t = \\dot\\sigma_t x_0 + \\dot\\alpha_t x_1$.

    Args:
        x_0: source samples, ``[B, ...]``.
        x_1: target samples, ``[B, ...]``.
        alpha_t, sigma_t: ``[B]``.
        d_alpha_t, d_sigma_t: ``[B]`` or ``None`` (then ``dx_t`` is ``None``).
        upcast: compute in fp32/fp64 (else in the inputs' dtype).

    Returns:
        ``(x_t, dx_t)``, each ``[B, ...]`` in the dtype of ``x_0`` and ``x_1`` promoted.
    """
    out_dtype = torch.promote_types(x_0.dtype, x_1.dtype)
    dtype = _compute_dtype(x_0, x_1, alpha_t, sigma_t) if upcast else out_dtype
    a, b = x_0.to(dtype), x_1.to(dtype)
    x_t = _per_sample(sigma_t, a, dtype) * a + _per_sample(alpha_t, a, dtype) * b
    dx_t = None
    if d_alpha_t is not None and d_sigma_t is not None:
        dx_t = _per_sample(d_sigma_t, a, dtype) * a + _per_sample(d_alpha_t, a, dtype) * b
        dx_t = dx_t.to(out_dtype)
    return x_t.to(out_dtype), dx_t


def fm_loss(
    output: Tensor,
    x_0: Tensor,
    x_1: Tensor,
    alpha_t: Tensor,
    sigma_t: Tensor,
    d_alpha_t: Tensor,
    d_sigma_t: Tensor,
    *,
    prediction: str = "velocity",
    weights: Tensor | None = None,
    reduction: str = "mean",
    upcast: bool = True,
) -> Tensor:
    """Flow-matching regression loss: per-sample mean of $(\\text{output} - \\text{target})^2$.

    The target is $\\dot\\sigma_t x_0 + \\dot\\alpha_t x_1$ (``"velocity"``), $x_1$ (``"x_1"``)
    or $x_0$ (``"epsilon"``). ``alpha_t`` and ``sigma_t`` do not enter any of the three targets;
    they are in the signature so that every prediction type takes the same arguments.

    Args:
        output: model output, ``[B, ...]``.
        x_0, x_1: ``[B, ...]``.
        alpha_t, sigma_t, d_alpha_t, d_sigma_t: ``[B]``.
        prediction: ``"velocity"``, ``"x_1"`` or ``"epsilon"``.
        weights: ``[B]`` per-sample weights, or ``None``.
        reduction: ``"mean"`` (over ``B``), ``"sum"`` or ``"none"`` (``[B]``).
        upcast: compute in fp32/fp64 (else in ``output``'s dtype).

    Returns:
        scalar, or ``[B]`` for ``reduction="none"``; fp32 (fp64 for fp64 inputs) when upcast.
    """
    dtype = _compute_dtype(output, x_0, x_1, d_alpha_t, d_sigma_t) if upcast else output.dtype
    o, a, b = output.to(dtype), x_0.to(dtype), x_1.to(dtype)
    if prediction == "velocity":
        target = _per_sample(d_sigma_t, a, dtype) * a + _per_sample(d_alpha_t, a, dtype) * b
    elif prediction == "x_1":
        target = b
    else:
        target = a
    batch = output.shape[0]
    per_sample = (o - target).square().reshape(batch, math.prod(output.shape[1:])).mean(dim=1)
    if weights is not None:
        per_sample = per_sample * weights.to(dtype).reshape(batch)
    return _reduce(per_sample, reduction)


def mixture_sample(x_0: Tensor, x_1: Tensor, kappa_t: Tensor, *, seed: int) -> Tensor:
    """Mixture-path sample: $x_t = x_1$ where $U < \\kappa_t$, else $x_0$, $U \\sim \\mathcal U[0, 1)$.

    Args:
        x_0, x_1: integer token tensors, ``[B, ...]``.
        kappa_t: ``[B]``.
        seed: seeds a ``torch.Generator`` on ``x_1``'s device.

    Returns:
        ``[B, ...]`` in ``x_1``'s dtype.
    """
    dtype = _compute_dtype(kappa_t)
    generator = torch.Generator(device=x_1.device).manual_seed(seed)
    u = torch.rand(x_1.shape, generator=generator, device=x_1.device, dtype=dtype)
    return torch.where(u < _per_sample(kappa_t, x_1, dtype), x_1, x_0.to(x_1.dtype))


def generalized_kl(
    logits: Tensor,
    x_1: Tensor,
    x_t: Tensor,
    jump_coefficient: Tensor,
    *,
    reduction: str = "mean",
    upcast: bool = True,
) -> Tensor:
    """Generalized KL of the mixture path, per token
    $-j\\,(p(x_t) - \\delta_{x_1 x_t} + (1 - \\delta_{x_1 x_t}) \\log p(x_1))$, $p = \\mathrm{softmax}$.

    Args:
        logits: ``[N, V]``.
        x_1, x_t: ``[N]`` token ids in ``[0, V)``.
        jump_coefficient: ``[N]``, $\\dot\\kappa_t / (1 - \\kappa_t)$ for a mixture path.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``[N]``).
        upcast: compute in fp32/fp64 (else in ``logits``' dtype).

    Returns:
        scalar, or ``[N]`` for ``reduction="none"``.
    """
    dtype = _compute_dtype(logits, jump_coefficient) if upcast else logits.dtype
    log_p = torch.log_softmax(logits.to(dtype), dim=-1)
    log_p_x1 = log_p.gather(-1, x_1.long()[:, None]).squeeze(-1)
    p_xt = log_p.gather(-1, x_t.long()[:, None]).squeeze(-1).exp()
    same = x_1 == x_t
    # where(), not (1 - δ) * log p: log p(x_1) may be -inf exactly where δ = 1.
    inner = torch.where(same, p_xt - 1, p_xt + log_p_x1)
    return _reduce(-jump_coefficient.to(dtype) * inner, reduction)


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
    upcast: bool = True,
) -> Tensor:
    """:func:`generalized_kl` of ``logits = hidden @ weight.T + bias``.

    Args:
        hidden: ``[N, H]``.
        weight: ``[V, H]``.
        x_1, x_t, jump_coefficient: ``[N]``.
        bias: ``[V]`` or ``None``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        chunk_size: ignored (the reference materialises all logits).
        upcast: do the matmul and the loss in fp32/fp64 (else in ``hidden``'s dtype).

    Returns:
        scalar, or ``[N]`` for ``reduction="none"``.
    """
    del chunk_size
    dtype = _compute_dtype(hidden, weight) if upcast else hidden.dtype
    logits = hidden.to(dtype) @ weight.to(dtype).T
    if bias is not None:
        logits = logits + bias.to(dtype)
    return generalized_kl(logits, x_1, x_t, jump_coefficient, reduction=reduction, upcast=upcast)


def mixture_euler_step(
    scores: Tensor,
    x_t: Tensor,
    jump_prob: Tensor,
    *,
    seed: int,
    scores_are_logits: bool = True,
    upcast: bool = True,
) -> Tensor:
    """One Euler step of a mixture-path CTMC sampler.

    Draws $x_1 \\sim \\mathrm{Cat}(\\mathrm{softmax}(\\text{scores}))$ (or $\\propto$ scores when
    ``scores_are_logits=False``) by Gumbel-max, then jumps to it where $U < $ ``jump_prob``.

    Args:
        scores: ``[N, V]`` logits, or non-negative unnormalised probabilities.
        x_t: ``[N]`` current tokens.
        jump_prob: ``[N]`` probability of jumping this step.
        seed: seeds a ``torch.Generator`` on ``scores``' device.
        scores_are_logits: whether ``scores`` are logits.
        upcast: compute in fp32/fp64.

    Returns:
        ``[N]`` next tokens, in ``x_t``'s dtype.
    """
    dtype = _compute_dtype(scores, jump_prob) if upcast else scores.dtype
    generator = torch.Generator(device=scores.device).manual_seed(seed)
    s = scores.to(dtype)
    log_p = s if scores_are_logits else torch.log(s)
    u = torch.rand(s.shape, generator=generator, device=s.device, dtype=dtype)
    x_1 = torch.argmax(log_p - torch.log(-torch.log(u)), dim=-1)
    u_jump = torch.rand(x_t.shape, generator=generator, device=s.device, dtype=dtype)
    return torch.where(u_jump < jump_prob.to(dtype), x_1.to(x_t.dtype), x_t)
