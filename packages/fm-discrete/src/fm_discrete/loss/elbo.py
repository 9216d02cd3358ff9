r"""The evidence lower bound of a posterior model on the mixture path: NLL and perplexity bounds.

For the CTMC sampled by ``MixtureDiscreteEulerSolver`` with source $p_0$ independent of the data,
the Girsanov ratio between the model's process and the conditional process given $x_1$ gives

$$-\log p^\theta_1(x_1) \le \int_0^1 \mathbb{E}_{x_t \sim p_t(\cdot \mid x_1)} \sum_i \ell_i(x_1, x_t, t)\,dt,$$

with $\ell_i$ the generalized KL of ``MixturePathGeneralizedKL`` (the source term vanishes because
$p(x_0 \mid x_1) = p_0(x_0)$). With a mask source and the exact posterior the bound is tight.

**Estimator.** Sampling $t \sim U[0,1]$ directly gives an unbiased estimate of *infinite variance*:
$\ell_i$ carries $\dot\kappa_t/(1-\kappa_t)$, and with a mask source a position is still masked with
probability $1-\kappa_t$, so the second moment grows like $\int dt/(1-t)$. Writing the integral in
$\kappa$ and substituting $\kappa = 1 - w^2$,

$$\int_0^1 \frac{\dot\kappa_t}{1-\kappa_t} \mathbb{E}[B_t]\,dt = \int_0^1 \frac{\mathbb{E}[B]}{1-\kappa}\,d\kappa
  = \int_0^1 \frac{2}{w}\,\mathbb{E}[B]\,dw,$$

where $B = \sum_i \ell_i / (\dot\kappa_t/(1-\kappa_t))$ is the bracket of the loss, which is
$O(1-\kappa) = O(w^2)$: the integrand is bounded and the variance finite. $w$ is stratified and
$t = \kappa^{-1}(1 - w^2)$ is what the model sees; no end-point guard is needed ($w > 0$).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from fm_core.utils.backend import check_backend
from fm_discrete._checks import check_probabilities, check_tokens
from fm_discrete.loss.generalized_kl import generalized_kl
from fm_discrete.path.mixture import MixtureDiscreteProbPath

__all__ = ["ELBOResult", "MixturePathELBO"]


@dataclass
class ELBOResult:
    """Bounds over a data set.

    Attributes:
        sequence_nll: NLL bound of each sequence in nats, ``[num_sequences]``, in input order.
        num_tokens: number of tokens scored.
        nll_per_token: $\\sum$ ``sequence_nll`` / ``num_tokens`` (nats).
        perplexity: $\\exp$(``nll_per_token``), an upper bound on the model's perplexity.
    """

    sequence_nll: Tensor
    num_tokens: int
    nll_per_token: float
    perplexity: float


class MixturePathELBO:
    r"""Monte-Carlo estimate of the NLL bound with stratified times and a fixed seed.

    Sequence $j$ gets $K$ = ``num_time_samples`` stratified $w_k = (k + U_k)/K$, $k = 0..K-1$,
    times $t_k = \kappa^{-1}(1 - w_k^2)$, and its own source and path draws, all from a generator
    seeded by (``seed``, $j$): the estimate of a sequence does not depend on how the data set is
    batched. Its bound is $\frac1K \sum_k \frac{2}{w_k} B_k$ (unbiased, finite variance; see the
    module notes).

    Args:
        path: the training ``MixtureDiscreteProbPath``.
        source_distribution_p: $p_0$, ``[V]`` (e.g. ``mask_source_p(V, m)``).
        num_time_samples: $K$, time strata per sequence (default 16).
        seed: base seed (default 0).
        model_output: ``"logits"`` (default) or ``"probs"``.
        backend: loss backend, as in ``MixturePathGeneralizedKL``.

    Example:
        >>> path = MixtureDiscreteProbPath(CondOTScheduler())
        >>> elbo = MixturePathELBO(path, mask_source_p(11, 10), num_time_samples=8)
        >>> model = lambda x, t: torch.zeros(*x.shape, 11)  # uniform logits (mask included)
        >>> batches = [torch.randint(0, 10, (2, 16)), torch.randint(0, 10, (2, 16))]
        >>> result = elbo.evaluate(model, batches)  # doctest: +SKIP
        >>> result.perplexity  # doctest: +SKIP
    """

    def __init__(
        self,
        path: MixtureDiscreteProbPath,
        source_distribution_p: Tensor,
        *,
        num_time_samples: int = 16,
        seed: int = 0,
        model_output: str = "logits",
        backend: str = "auto",
    ) -> None:
        if not isinstance(path, MixtureDiscreteProbPath):
            raise TypeError(f"path must be a MixtureDiscreteProbPath, got {type(path).__name__}")
        self.path = path
        self.backend = check_backend(backend)
        check_probabilities(source_distribution_p, "source_distribution_p")
        if source_distribution_p.ndim != 1:
            raise ValueError(
                f"source_distribution_p must have shape [V], got {tuple(source_distribution_p.shape)}"
            )
        self.p0 = source_distribution_p.detach().double().cpu()
        if (
            isinstance(num_time_samples, bool)
            or not isinstance(num_time_samples, int)
            or num_time_samples < 1
        ):
            raise ValueError(f"num_time_samples must be a positive int, got {num_time_samples!r}")
        self.num_time_samples = num_time_samples
        self.seed = int(seed)
        if model_output not in ("logits", "probs"):
            raise ValueError(f"model_output must be 'logits' or 'probs', got {model_output!r}")
        self.model_output = model_output

    def _draws(self, index: int, length: int) -> tuple[Tensor, Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        k = self.num_time_samples
        # 1 - U lies in (0, 1], so w > 0 and kappa < 1.
        u_w = torch.rand(k, generator=g, dtype=torch.float64)
        w = (torch.arange(k, dtype=torch.float64) + 1.0 - u_w) / k
        x_0 = torch.multinomial(self.p0, k * length, replacement=True, generator=g).view(k, length)
        u = torch.rand(k, length, generator=g, dtype=torch.float64)
        return w, x_0, u

    @torch.no_grad()
    def sequence_nll(
        self, model: Callable[..., Tensor], x_1: Tensor, *, start_index: int = 0, **model_extras
    ) -> Tensor:
        """NLL bound (nats) of each sequence of a batch.

        Args:
            model: posterior model ``model(x=x_t, t=t, **extras)`` -> ``[B, ..., V]``, ``t`` ``[B]``.
            x_1: data, long ``[B, ...]`` with ids in ``[0, V)``.
            start_index: global index of ``x_1[0]`` in the data set (seeds its draws).
            **model_extras: passed to the model.

        Returns:
            Float64 tensor ``[B]``.
        """
        vocab = self.p0.numel()
        check_tokens(x_1, "x_1", vocab)
        if x_1.ndim < 1:
            raise ValueError("x_1 must have shape [B, ...]")
        batch, shape, device = x_1.shape[0], x_1.shape[1:], x_1.device
        length = math.prod(shape)
        draws = [self._draws(start_index + b, length) for b in range(batch)]
        w_all = torch.stack([d[0] for d in draws]).to(device)  # [B, K]
        x0_all = torch.stack([d[1] for d in draws]).to(device)  # [B, K, L]
        u_all = torch.stack([d[2] for d in draws]).to(device)
        total = torch.zeros(batch, dtype=torch.float64, device=device)
        for k in range(self.num_time_samples):
            w = w_all[:, k]
            kappa = (1.0 - w * w).unsqueeze(-1)
            t = self.path.scheduler.kappa_inverse(kappa.squeeze(-1)).clamp(0.0, 1.0)
            flat_1 = x_1.reshape(batch, length)
            x_t = torch.where(u_all[:, k] < kappa, flat_1, x0_all[:, k]).view_as(x_1)
            out = model(x=x_t, t=t.to(torch.float32), **model_extras)
            if self.model_output == "probs":
                out = out.double().clamp_min(1e-300).log()
            weight = (2.0 / w).reshape(batch, *([1] * len(shape)))
            ell = generalized_kl(out, x_1, x_t, weight, reduction="none", backend=self.backend)
            total += ell.reshape(batch, -1).double().sum(-1)
        return total / self.num_time_samples

    def evaluate(
        self, model: Callable[..., Tensor], batches: Iterable[Tensor], **model_extras
    ) -> ELBOResult:
        """NLL bound per sequence and the perplexity bound over a data set given in batches.

        Args:
            model: as in ``sequence_nll``.
            batches: iterable of long tensors ``[B_j, ...]`` (one sequence shape throughout a batch).
            **model_extras: passed to the model.
        """
        nlls, tokens, index = [], 0, 0
        for x_1 in batches:
            nll = self.sequence_nll(model, x_1, start_index=index, **model_extras)
            nlls.append(nll.cpu())
            tokens += x_1.numel()
            index += x_1.shape[0]
        if tokens == 0:
            raise ValueError("batches must hold at least one token")
        seq = torch.cat(nlls)
        per_token = float(seq.sum()) / tokens
        return ELBOResult(seq, tokens, per_token, math.exp(per_token))
