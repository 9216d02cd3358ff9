r"""Training objectives and validation scores of the flow model and of the autoregressive baseline.

Flow model: the posterior $p_{1|t}(\cdot \mid x_t)$ of fm-discrete's ``MixtureDiscreteProbPath``,
trained with ``MixturePathGeneralizedKL`` (whose expectation over $t \sim U[0,1]$ is the negative
ELBO) or ``MixturePathCrossEntropy``. Times are stratified over the batch and drawn in one of three
variables; the importance weight keeps the generalized KL an unbiased estimate of the same ELBO:

- ``uniform``: $t \sim U$, weight 1;
- ``kappa``: $\kappa \sim U$, weight $1/\dot\kappa_t$, the loss becomes $B/(1-\kappa)$;
- ``elbo``: $\kappa = 1 - w^2$, $w \sim U$, weight $2w/\dot\kappa_t$, the loss becomes $2B/w$ with a
  finite variance (the estimator of fm-discrete's ``MixturePathELBO``).

With a mask source, fm-discrete's ``MaskedPosterior`` gives the mask token no probability and
copies unmasked tokens (their exact posterior): only masked positions carry loss. The stratified
times and their weights are fm-discrete's ``stratified_uniform`` and ``mixture_times``.

Block diffusion (``block_size > 0``, mask source): every block of every sequence gets its own
time (stratified over all blocks of the batch) and the network sees the clean sequence next to the
noised one (``net(x_t, t, clean=x_1)``); the loss is the sum of the blocks' losses. The validation
bound is the sum over blocks of each block's ELBO given the clean blocks before it, an exact bound
on the joint NLL; ``block_sequence_nll`` estimates it with ``MixturePathELBO``'s draws (one time
per sequence and stratum shared by its blocks: each block's term keeps its expectation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fm_core.path.scheduler import PolynomialConvexScheduler
from fm_core.training import unwrap_model
from fm_discrete import (
    MaskedPosterior,
    MixtureDiscreteProbPath,
    MixturePathCrossEntropy,
    MixturePathELBO,
    MixturePathGeneralizedKL,
    mask_source_p,
    uniform_source_p,
)
from fm_discrete.posterior import forbid_token
from fm_discrete.time import mixture_times, stratified_uniform

if TYPE_CHECKING:
    from fm_text.config import TrainConfig
    from fm_text.data.tokenizer import TextTokenizer

__all__ = [
    "FlowObjective",
    "ar_inputs",
    "ar_nll",
    "ar_token_logits",
    "fused_loss_available",
    "source_distribution",
]


def fused_loss_available(raise_error: bool = False) -> bool:
    """Whether fm-kernels (the fused generalized-KL-with-linear loss) is importable."""
    try:
        import fm_kernels  # noqa: F401
    except ImportError:
        if raise_error:
            raise ValueError(
                "fused_loss: needs fm-kernels (pip install fm-text[kernels]), which is not "
                "installed"
            ) from None
        return False
    return True


def source_distribution(source: str, vocab_size: int, mask_id: int) -> Tensor:
    """$p_0$ ``[V]``: one-hot at the mask, or uniform over every id but the mask."""
    if source == "mask":
        return mask_source_p(vocab_size, mask_id)
    p = uniform_source_p(vocab_size).clone()
    p[mask_id] = 0.0
    return p / p.sum()


class FlowObjective:
    """Loss and validation bound of the flow model.

    Args:
        source: ``"mask"`` or ``"uniform"``.
        vocab_size: ids of the tokenizer.
        mask_id: the mask token.
        scheduler_n: exponent of ``PolynomialConvexScheduler``.
        loss: ``"gkl"`` or ``"ce"``.
        time_sampling: ``"uniform"``, ``"kappa"`` or ``"elbo"``.
        block_size: block diffusion's block length (0: off); see the module notes.
        fused: compute the generalized KL (``loss="gkl"`` only) from the network's final hidden
            states with ``fm_kernels.generalized_kl_linear``. With its Triton kernel (CUDA) the
            ``[B·L, V]`` logits are never materialised, only one chunk at a time; elsewhere
            fm-kernels' torch reference builds them in full (same values, no memory saved).
            Needs fm-kernels (``pip install fm-text[kernels]``).
        kernel_backend: fm-kernels' ``backend`` for the fused loss (``"auto"``, ``"torch"``,
            ``"triton"``).
    """

    def __init__(
        self,
        *,
        source: str,
        vocab_size: int,
        mask_id: int,
        scheduler_n: float,
        loss: str,
        time_sampling: str,
        fused: bool = False,
        kernel_backend: str = "auto",
        block_size: int = 0,
    ) -> None:
        if block_size and (source != "mask" or fused):
            raise ValueError("block_size: block diffusion needs a mask source and no fused loss")
        self.block_size = block_size
        if fused and loss != "gkl":
            raise ValueError(
                f"fused_loss: the fused kernel computes the generalized KL; use loss 'gkl', "
                f"got {loss!r}"
            )
        if fused:
            fused_loss_available(raise_error=True)
        self.fused = fused
        self.kernel_backend = kernel_backend
        self.path = MixtureDiscreteProbPath(PolynomialConvexScheduler(scheduler_n))
        self.source = source
        self.mask_id = mask_id
        self.p0 = source_distribution(source, vocab_size, mask_id)
        self.loss_kind = loss
        self.time_sampling = time_sampling
        self.gkl = MixturePathGeneralizedKL(self.path, reduction="none")
        self.ce = MixturePathCrossEntropy(reduction="none", only_changed=source == "mask")

    @classmethod
    def from_config(
        cls, config: TrainConfig, tokenizer: TextTokenizer, *, fused: bool = False
    ) -> FlowObjective:
        """The objective a run's ``TrainConfig`` and tokenizer describe."""
        return cls(
            source=config.source,
            vocab_size=tokenizer.vocab_size,
            mask_id=tokenizer.mask_id,
            scheduler_n=config.scheduler_n,
            loss=config.loss,
            time_sampling=config.time_sampling,
            fused=fused,
            block_size=config.block_size,
        )

    def posterior(self, net: nn.Module) -> MaskedPosterior:
        """The loss' and the solver's view of ``net`` for this objective's source."""
        return MaskedPosterior(net, self.mask_id, copy_unmasked=self.source == "mask")

    def _times(self, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        r"""Stratified times ``t`` ``[B]`` and importance weights ``[B]`` (relative to $t \sim U$)."""
        # In the default dtype (float32): the same draws as before the move to fm-discrete.
        u = stratified_uniform(batch, generator=generator, dtype=torch.get_default_dtype())
        return mixture_times(self.path.scheduler, u, self.time_sampling)

    def loss(self, model: nn.Module, x_1: Tensor, generator: torch.Generator) -> Tensor:
        """Mean loss per token of a batch ``x_1`` ``[B, L]`` (a scalar)."""
        if self.block_size:
            return self._block_loss(model, x_1, generator)
        batch = x_1.shape[0]
        t, weight = self._times(batch, generator)
        t, weight = t.to(x_1.device), weight.to(x_1.device)
        x_0 = torch.multinomial(self.p0, x_1.numel(), replacement=True, generator=generator)
        x_0 = x_0.view_as(x_1).to(x_1.device)
        sample = self.path.sample(x_0, x_1, t)
        if self.fused:
            return self._fused_gkl(model, x_1, sample.x_t, t, weight)
        logits = model(x=sample.x_t, t=t)
        if self.loss_kind == "gkl":
            per_token = self.gkl(logits.float(), x_1, sample.x_t, t) * weight.unsqueeze(-1)
        else:
            per_token = self.ce(logits.float(), x_1, sample.x_t, t)
        return per_token.mean()

    def _block_loss(self, model: nn.Module, x_1: Tensor, generator: torch.Generator) -> Tensor:
        """``loss`` of block diffusion: one time per block, the clean sequence beside the noised."""
        batch, length = x_1.shape
        rows = batch * (length // self.block_size)  # one row per block
        t, weight = self._times(rows, generator)
        t, weight = t.to(x_1.device), weight.to(x_1.device)
        blocks_1 = x_1.reshape(rows, self.block_size)
        x_0 = torch.full_like(blocks_1, self.mask_id)  # the mask source: no draw needed
        blocks_t = self.path.sample(x_0, blocks_1, t).x_t
        x_t = blocks_t.reshape(batch, length)
        logits = model(x=x_t, t=torch.zeros(batch, device=x_1.device), clean=x_1)
        logits = logits.float().reshape(rows, self.block_size, -1)
        if self.loss_kind == "gkl":
            per_token = self.gkl(logits, blocks_1, blocks_t, t) * weight.unsqueeze(-1)
        else:
            per_token = self.ce(logits, blocks_1, blocks_t, t)
        return per_token.mean()

    @torch.no_grad()
    def block_sequence_nll(
        self, model: nn.Module, batches, num_time_samples: int, seed: int = 0
    ) -> Tensor:
        """Block diffusion's NLL bound (nats) per sequence ``[N]`` (float64, on the CPU).

        Args:
            model: the posterior (``posterior(net)``), called with ``clean=x_1``.
            batches: iterable of long ``[B_j, L]``.
            num_time_samples: ELBO time strata per sequence.
            seed: base seed of the draws (as ``MixturePathELBO``).
        """
        elbo = self.elbo(num_time_samples, seed)
        out, index = [], 0
        for x_1 in batches:
            out.append(elbo.sequence_nll(model, x_1, start_index=index, clean=x_1).cpu())
            index += x_1.shape[0]
        return torch.cat(out)

    @torch.no_grad()
    def left_to_right_nll(self, net: nn.Module, batches) -> Tensor:
        r"""Exact NLL (nats) per sequence ``[N]`` of left-to-right decoding (mask source).

        The distribution ``MaskedDiffusionSampler``'s ``left_threshold`` draws with
        ``threshold=1``, temperature 1 and one step per token: each position from the posterior
        given every position before it, the positions after it masked; on block diffusion runs
        within its block (the blocks before it clean). Unlike the ELBO bound this is the
        likelihood of what that sampler generates: $\sum_i -\log p(x^i \mid x^{<i})$, one pass
        per position of a block (``block_size`` passes, or ``L`` on a plain run, at time
        $t = i / L$: the sampler's grid).

        Args:
            net: the transformer, in eval mode.
            batches: iterable of long ``[B_j, L]``.
        """
        if self.source != "mask":
            raise ValueError("left_to_right_nll: defined for mask-source runs")
        model = self.posterior(net)
        out = []
        for x_1 in batches:
            batch, length = x_1.shape
            size = self.block_size or length
            where = torch.arange(length, device=x_1.device) % size  # position within its block
            masks = torch.full_like(x_1, self.mask_id)
            nll = torch.zeros(batch, dtype=torch.float64, device=x_1.device)
            for j in range(size):
                x_t = torch.where(where >= j, masks, x_1)
                if self.block_size:
                    logits = model(x=x_t, t=torch.zeros(batch, device=x_1.device), clean=x_1)
                else:
                    logits = model(x=x_t, t=torch.full((batch,), j / length, device=x_1.device))
                at = where == j
                logp = logits[:, at].double().log_softmax(-1)
                nll -= logp.gather(-1, x_1[:, at].unsqueeze(-1)).squeeze(-1).sum(-1)
            out.append(nll.cpu())
        return torch.cat(out)

    def _fused_gkl(
        self, model: MaskedPosterior, x_1: Tensor, x_t: Tensor, t: Tensor, weight: Tensor
    ) -> Tensor:
        """The generalized KL of ``loss`` with the output projection fused into the kernel.

        ``MaskedPosterior``'s logit edits become kernel inputs: the mask token's logit is a
        $-\\infty$ bias, and positions the mask source leaves unmasked (their copied posterior
        gives a zero loss) get a zero jump coefficient.
        """
        from fm_kernels import generalized_kl_linear

        hidden = model.net(x_t, t, return_hidden=True)
        head = unwrap_model(model.net).head
        device = hidden.device.type
        if torch.is_autocast_enabled(device):  # the head's matmul in the autocast dtype, as unfused
            hidden = hidden.to(torch.get_autocast_dtype(device))
        v = head.weight.shape[0]
        coeff = (self.gkl.path.jump_coefficient(t, self.gkl.eps) * weight).unsqueeze(-1)
        coeff = coeff.expand_as(x_1)
        if model.copy_unmasked:
            coeff = coeff * (x_t == model.mask_token)
        bias = torch.zeros(v, dtype=hidden.dtype, device=hidden.device)
        bias[model.mask_token] = -torch.inf
        return generalized_kl_linear(
            hidden.reshape(-1, hidden.shape[-1]),
            head.weight.to(hidden.dtype),
            x_1.reshape(-1),
            x_t.reshape(-1),
            coeff.reshape(-1).float(),
            bias=bias,
            reduction="mean",
            backend=self.kernel_backend,
        )

    def elbo(self, num_time_samples: int, seed: int = 0) -> MixturePathELBO:
        """fm-discrete's ``MixturePathELBO`` on this path and source."""
        return MixturePathELBO(self.path, self.p0, num_time_samples=num_time_samples, seed=seed)


def ar_inputs(x: Tensor, bos_id: int) -> Tensor:
    """Inputs of the autoregressive model: ``[BOS, x_0 .. x_{L-2}]`` for targets ``x`` ``[B, L]``."""
    return torch.cat((torch.full_like(x[:, :1], bos_id), x[:, :-1]), dim=1)


def ar_token_logits(net: nn.Module, x: Tensor, bos_id: int, mask_id: int) -> Tensor:
    """Next-token logits ``[B, L, V]`` of every token of ``x`` (the mask gets $-\\infty$)."""
    return forbid_token(net(ar_inputs(x, bos_id)), mask_id)


def ar_nll(net: nn.Module, x: Tensor, bos_id: int, mask_id: int) -> Tensor:
    """Exact NLL (nats) per token ``[B, L]`` of ``x`` under the autoregressive model."""
    logits = ar_token_logits(net, x, bos_id, mask_id).float()
    return F.cross_entropy(logits.flatten(0, 1), x.flatten(), reduction="none").view_as(x)
