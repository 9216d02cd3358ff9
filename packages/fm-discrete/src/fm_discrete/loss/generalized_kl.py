r"""The generalized KL loss of discrete flow matching on the mixture path."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fm_core.ext import check_backend, check_reduction, reduce_loss, resolve_backend
from fm_core.utils.tensor import unsqueeze_to_match
from fm_discrete.loss._inputs import check_loss_inputs
from fm_discrete.path.mixture import DEFAULT_JUMP_EPS, MixtureDiscreteProbPath

__all__ = ["MixturePathGeneralizedKL", "generalized_kl"]


def _generalized_kl_torch(
    logits: Tensor, x_1: Tensor, x_t: Tensor, jump_coefficient: Tensor, *, reduction: str = "mean"
) -> Tensor:
    r"""fm-discrete's torch path of ``fm_kernels.generalized_kl`` (same values, any leading shape).

    Kept here because fm-kernels is optional; ``tests/test_kernel_dispatch_discrete.py`` pins it
    to ``fm_kernels.reference.generalized_kl``.

    Per token: $-c\,\big(p(x_t) - \delta_{x_1 x_t} + (1-\delta_{x_1 x_t}) \log p(x_1)\big)$ with
    $p = \mathrm{softmax}(\text{logits})$ and $c$ = ``jump_coefficient``.

    Args:
        logits: ``[..., V]``.
        x_1: target ids, ``[...]``.
        x_t: current ids, ``[...]``.
        jump_coefficient: $c$, broadcastable to ``[...]``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    log_p = torch.log_softmax(
        logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1
    )
    log_p_x1 = log_p.gather(-1, x_1.unsqueeze(-1).long()).squeeze(-1)
    p_xt = log_p.gather(-1, x_t.unsqueeze(-1).long()).squeeze(-1).exp()
    # where(), not (1 - δ) log p(x_1): log p(x_1) may be -inf exactly where δ = 1 (0 * -inf is
    # NaN); the bracket there is p(x_t) - 1, as in fm_kernels.generalized_kl.
    inner = torch.where(x_1 == x_t, p_xt - 1.0, p_xt + log_p_x1)
    loss = -jump_coefficient.to(log_p.dtype) * inner
    return reduce_loss(loss, reduction)


def generalized_kl(
    logits: Tensor,
    x_1: Tensor,
    x_t: Tensor,
    jump_coefficient: Tensor,
    *,
    reduction: str = "mean",
    backend: str = "auto",
) -> Tensor:
    """The generalized KL with a given per-position coefficient, dispatched to fm_kernels or torch.

    Args:
        logits: ``[B, ..., V]``.
        x_1: ``[B, ...]``.
        x_t: ``[B, ...]``.
        jump_coefficient: broadcastable to ``[B, ...]`` (already guarded by the caller).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
    """
    coeff = jump_coefficient.expand(x_1.shape)
    kernels = resolve_backend(backend, logits, x_1, x_t)
    if kernels is None:
        return _generalized_kl_torch(logits, x_1, x_t, coeff, reduction=reduction)
    vocab = logits.shape[-1]
    out = kernels.generalized_kl(
        logits.reshape(-1, vocab),
        x_1.reshape(-1).long(),
        x_t.reshape(-1).long(),
        coeff.reshape(-1).to(torch.float32),
        reduction=reduction,
        backend="triton",
    )
    return out.reshape(x_1.shape) if reduction == "none" else out


class MixturePathGeneralizedKL(nn.Module):
    r"""Generalized KL between the path's conditional rates and the model's rates.

    For a posterior model $p_{1|t}(\cdot \mid x_t) = \mathrm{softmax}(\text{logits})$, per position $i$:

    $$\ell_i = -\frac{\dot\kappa_t}{1-\kappa_t}\Big[p_{1|t}(x_t^i \mid x_t) - \delta_{x_1^i}(x_t^i)
      + \big(1 - \delta_{x_1^i}(x_t^i)\big)\log p_{1|t}(x_1^i \mid x_t)\Big] \ge 0 .$$

    Its expectation over $t \sim U[0,1]$ and $x_t$, summed over positions, is the negative ELBO
    (see ``MixturePathELBO``).

    **Finite at $t \to 1$.** $\dot\kappa_t/(1-\kappa_t)$ diverges at $t=1$. It is computed as
    $\dot\kappa_t / \max(1-\kappa_t, \epsilon)$ with $\epsilon$ = ``eps`` (default ``1e-4``), so the loss
    is finite on the closed interval; at $t = 1$ the path gives $x_t = x_1$ and the bracket is
    $p(x_1) - 1$, bounded, so the loss is at most $\dot\kappa_1/\epsilon$ there.

    Args:
        path: the ``MixtureDiscreteProbPath`` the model is trained on.
        reduction: ``"mean"`` (over all positions, default), ``"sum"`` or ``"none"`` (``[B, ...]``).
        eps: floor of $1-\kappa_t$.
        backend: ``"auto"`` (fm_kernels when importable and tensors on CUDA), ``"torch"``, ``"triton"``.

    Example:
        >>> path = MixtureDiscreteProbPath(CondOTScheduler())
        >>> loss_fn = MixturePathGeneralizedKL(path)
        >>> x_1 = torch.randint(0, 9, (2, 6))
        >>> s = path.sample(torch.full_like(x_1, 9), x_1, torch.rand(2))
        >>> loss_fn(torch.randn(2, 6, 10), x_1, s.x_t, s.t).shape
        torch.Size([])
    """

    def __init__(
        self,
        path: MixtureDiscreteProbPath,
        reduction: str = "mean",
        *,
        eps: float = DEFAULT_JUMP_EPS,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(path, MixtureDiscreteProbPath):
            raise TypeError(f"path must be a MixtureDiscreteProbPath, got {type(path).__name__}")
        self.path = path
        self.reduction = check_reduction(reduction)
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps!r}")
        self.eps = eps
        self.backend = check_backend(backend)

    def forward(self, logits: Tensor, x_1: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """Evaluate the loss.

        Args:
            logits: posterior logits, shape ``[B, ..., V]``.
            x_1: target tokens, shape ``[B, ...]``, ids in ``[0, V)``.
            x_t: path sample at ``t``, shape ``[B, ...]``.
            t: times, shape ``[B]``.

        Returns:
            A scalar, or the per-position loss ``[B, ...]`` with ``reduction="none"``.
        """
        check_loss_inputs(logits, x_1, x_t, t)
        coeff = unsqueeze_to_match(self.path.jump_coefficient(t, self.eps), x_1)
        return generalized_kl(
            logits, x_1, x_t, coeff, reduction=self.reduction, backend=self.backend
        )
