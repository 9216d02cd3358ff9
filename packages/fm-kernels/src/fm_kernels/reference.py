"""Pure-torch references, one per kernel, with the kernels' signatures.

Clarity beats cleverness here: every reference upcasts to fp32 (fp64 when an input is fp64),
materialises whatever it needs, and is what the kernels are tested against. ``upcast=False``
computes in the inputs' own dtype instead; the tests use it to measure how far plain torch in
bf16 lands from the fp32 answer (flash-attention's three-way tolerance).

The random reference (:func:`mixture_euler_step`) draws from
``torch.Generator(...).manual_seed(seed)`` by inverse-CDF sampling: the same distribution as the
kernel's Gumbel-max on its Philox stream (``tl.rand``), not the same numbers, and by another
algorithm, so it checks the kernel's sampling rather than repeating it.

These are the kernels' specifications and oracles, and the torch fallback of fm-kernels' own
functions. fm-core and fm-discrete keep their own torch paths (fm-kernels is an optional
dependency of theirs, and this leaf imports no fm-* package); the cross-package tests
(``tests/test_kernel_dispatch_*.py``) pin each of those paths to the reference here.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "fm_loss",
    "generalized_kl",
    "generalized_kl_linear",
    "mixture_euler_step",
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
    ``scores_are_logits=False``), then jumps to it where $U < $ ``jump_prob``. The kernel draws by
    Gumbel-max; this reference by inverse-CDF sampling (same distribution, other numbers).

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
    probs = torch.softmax(s, dim=-1) if scores_are_logits else s
    cdf = probs.cumsum(dim=-1)
    u = torch.rand((s.shape[0], 1), generator=generator, device=s.device, dtype=dtype)
    # The first index whose CDF exceeds U * total (zero-probability entries are never chosen).
    x_1 = (cdf <= u * cdf[:, -1:]).sum(dim=-1).clamp_max(s.shape[-1] - 1)
    u_jump = torch.rand(x_t.shape, generator=generator, device=s.device, dtype=dtype)
    return torch.where(u_jump < jump_prob.to(dtype), x_1.to(x_t.dtype), x_t)
