r"""Samplers for masked (mask-source) posterior models: which masked positions to decode, and when.

On the mixture path with a mask source a position, once unmasked, keeps its token, and the exact
posterior $p(x_1^i \mid x_t)$ depends on the unmasked tokens only (not on $t$). Sampling is then a
question of *order* and *count*: which masked positions to decode at each model call.

- ``"random"``: at step $k$ decode $n_k = \mathrm{round}(M\kappa_{t_{k+1}}) - \mathrm{round}(M\kappa_{t_k})$
  positions chosen uniformly ($M$ masked positions at the start), each drawn from its posterior.
  Exact with one position per call; with more, positions decoded together are independent given
  the rest (the Euler sampler's factorisation error).
- ``"confidence"``: the same counts, but the positions whose drawn token has the highest
  probability (MaskGIT / LLaDA-style). **Biased toward likely tokens** (mode seeking): it lowers
  entropy; the bias on a two-position target is computed in closed form in the tests. With
  ``choice_temperature`` $\tau > 0$ the order is MaskGIT's: positions ranked by
  $\log p + \tau (1 - k/K)\, g$, $g$ standard Gumbel noise annealed to 0 over the $K$ steps,
  which moves the choice from random order ($\tau \to \infty$) to pure confidence ($\tau = 0$).
- ``"threshold"``: decode every masked position whose drawn token has probability ``>= threshold``
  (at least the most confident one per row); the number of calls adapts (at most ``steps``; the
  last step decodes everything left).
- ``"left_threshold"``: decode the leftmost masked position of each row (left-to-right, as an
  autoregressive model would) and with it every masked position whose drawn token has probability
  ``>= threshold`` (Fast-dLLM-style parallel decoding, anchored on the left). The leftmost
  position is drawn from its posterior given everything decoded before it, so with
  ``threshold = 1`` (only certain tokens go early, which changes nothing) it is **exact**
  left-to-right sampling for an exact posterior. Below 1 an early token is drawn from its
  posterior given what was decoded *before* the call, not given the tokens decoded with it
  (the parallel-decoding bias; the tests compute it in closed form on an enumerable target).
  The number of calls adapts: at most ``steps``, and at most one per position.
- ``"remdm"``: ReMDM (Wang et al., 2025) on the schedule $\kappa$: decoded positions are re-masked
  with probability $\sigma_k$ and masked ones decoded with probability
  $(\kappa_{k+1} - (1-\sigma_k)\kappa_k)/(1-\kappa_k)$, which keeps the path's marginal
  $\kappa_{k+1}$; ``remask="cap"``: $\sigma_k = \min(\eta, (1-\kappa_{k+1})/\kappa_k)$,
  ``"rescale"``: $\eta\,(1-\kappa_{k+1})/\kappa_k$. Lets late tokens correct early ones.
- ``"first_hitting"``: the exact jump times of the CTMC (Zheng et al., 2024): with $n$ masked
  positions at $t$, the next decoding happens at $s$ with $1-\kappa_s = (1-\kappa_t)U^{1/n}$, at a
  uniformly chosen masked position, drawn from $p_{1|s}$. Exact for an exact posterior; one
  model call per token (``steps`` is ignored).

Every method draws tokens in float64 (``dtype_categorical``) after ``temperature``, ``top_k`` and
``top_p`` (nucleus) filtering, keeps ``fixed_mask`` positions (prompt, suffix), supports
classifier-free guidance (the guided posterior $\propto [(1+w)p^c - w\,p^u]_+$ chooses the token;
the decoding order and times are those of the method) and a ``generator``; ``last_nfe`` counts
model calls. Only the positions a step may decode are scored and drawn: on the CPU the model's
output is cut to them before the float64 work, and a step that decodes no position (its count
is 0) makes no model call, so with 64 steps and 4 tokens ``"random"`` calls the model 4 times.

**No host sync inside the loops on an accelerator.** Stopping early once nothing is masked,
skipping a step with nothing to decode and cutting the output to the decoded positions read
values back from the device; they run on the CPU only (where the read costs nothing) and outside
``torch.compile``. On a GPU every step runs, scores every position and calls the model
(``last_nfe`` = ``steps``; the threshold methods then make their remaining calls on a finished sequence,
which changes nothing). ``first_hitting`` reads the largest masked count once,
before its loop, and then runs exactly that many steps on every device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from fm_core.path.scheduler.convex import CondOTScheduler
from fm_core.path.scheduler.scheduler import ConvexScheduler
from fm_core.solver.solver import Solver
from fm_core.utils.checks import check_same_device, check_tensor
from fm_discrete._checks import check_tokens, check_vocabulary_size

__all__ = ["MASKED_METHODS", "MaskedDiffusionSampler"]

MASKED_METHODS = ("random", "confidence", "threshold", "left_threshold", "remdm", "first_hitting")


class MaskedDiffusionSampler(Solver):
    r"""Decode the masked positions of ``x_init`` with a posterior model (see the module notes).

    Args:
        model: posterior model ``model(x=x_t, t=t, **extras)`` -> ``[*x_t.shape, V]``.
        vocabulary_size: $V$, mask included.
        mask_token: the mask id.
        scheduler: $\kappa_t$ of the training path (default ``CondOTScheduler()``).
        model_output: ``"logits"`` (default) or ``"probs"``.

    Example:
        >>> model = lambda x, t: torch.zeros(*x.shape, 11)  # uniform over 10 tokens + mask
        >>> sampler = MaskedDiffusionSampler(model, 11, mask_token=10)
        >>> x = sampler.sample(torch.full((2, 16), 10), steps=4, method="confidence")
        >>> bool((x != 10).all()), sampler.last_nfe
        (True, 4)
    """

    def __init__(
        self,
        model: Callable[..., Tensor],
        vocabulary_size: int,
        mask_token: int,
        *,
        scheduler: ConvexScheduler | None = None,
        model_output: str = "logits",
    ) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        self.model = model
        self.vocabulary_size = check_vocabulary_size(vocabulary_size)
        if isinstance(mask_token, bool) or not isinstance(mask_token, int):
            raise TypeError(f"mask_token must be an int, got {type(mask_token).__name__}")
        if not 0 <= mask_token < vocabulary_size:
            raise ValueError(f"mask_token must be in [0, {vocabulary_size}), got {mask_token}")
        self.mask_token = mask_token
        scheduler = CondOTScheduler() if scheduler is None else scheduler
        if not isinstance(scheduler, ConvexScheduler):
            raise TypeError(f"scheduler must be a ConvexScheduler, got {type(scheduler).__name__}")
        self.scheduler = scheduler
        if model_output not in ("logits", "probs"):
            raise ValueError(f"model_output must be 'logits' or 'probs', got {model_output!r}")
        self.model_output = model_output
        self.last_nfe = 0

    @torch.no_grad()
    def sample(
        self,
        x_init: Tensor,
        steps: int,
        *,
        method: str = "confidence",
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        threshold: float = 0.9,
        choice_temperature: float = 0.0,
        eta: float = 0.05,
        remask: str = "cap",
        fixed_mask: Tensor | None = None,
        guidance_scale: float = 0.0,
        unconditional_model_extras: dict | None = None,
        generator: torch.Generator | None = None,
        dtype_categorical: torch.dtype = torch.float64,
        **model_extras,
    ) -> Tensor:
        """Decode every masked position of ``x_init`` that ``fixed_mask`` does not hold.

        Args:
            x_init: long ``[B, L]``; positions equal to the mask are decoded.
            steps: number of decoding steps (model calls at most ``steps``; ``first_hitting``
                ignores it).
            method: one of ``MASKED_METHODS``.
            temperature: divides the logits (> 0).
            top_k: keep the ``top_k`` most likely tokens (``None``: all).
            top_p: keep the smallest set of tokens of probability ``>= top_p`` (``None``: all).
            threshold: confidence threshold of ``"threshold"`` and ``"left_threshold"``, in
                ``(0, 1]``.
            choice_temperature: Gumbel noise on the confidence order of ``"confidence"``
                (MaskGIT's; ``0``: none), ``>= 0``.
            eta: re-masking strength of ``"remdm"``, in ``[0, 1]``.
            remask: ``"cap"`` or ``"rescale"`` (``"remdm"``).
            fixed_mask: bool ``[B, L]``, ``True`` where ``x_init`` is kept (prompt, suffix).
            guidance_scale: classifier-free guidance $w$.
            unconditional_model_extras: extras of the unconditional call (needed when $w \\ne 0$).
            generator: optional ``torch.Generator``.
            dtype_categorical: precision of the token draws (float64 by default).
            **model_extras: passed to the model.

        Returns:
            Long ``[B, L]``.
        """
        self._check(x_init, steps, method, temperature, top_k, top_p, threshold, eta, remask)
        ct = choice_temperature
        if isinstance(ct, bool) or not isinstance(ct, (int, float)) or not 0 <= ct < math.inf:
            raise ValueError(f"choice_temperature must be a finite number >= 0, got {ct!r}")
        _check_fixed_mask(x_init, fixed_mask)
        if guidance_scale != 0 and unconditional_model_extras is None:
            raise ValueError("unconditional_model_extras is required when guidance_scale != 0")
        self.last_nfe = 0
        self._draw_kw = dict(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            guidance_scale=guidance_scale,
            uncond=unconditional_model_extras,
            extras=model_extras,
            generator=generator,
            dtype=dtype_categorical,
        )
        x = x_init.clone()
        free = x == self.mask_token
        if fixed_mask is not None:
            free &= ~fixed_mask
        if method == "first_hitting":
            return self._first_hitting(x, free, generator)
        grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        kappa = self.scheduler(grid).alpha_t.clamp(0.0, 1.0).tolist()  # host values, read once
        grid = grid.tolist()
        total = free.sum(-1)  # M per row
        for k in range(steps):
            masked = (x == self.mask_token) & free
            if _host_reads_free(x) and not bool(masked.any()):
                break
            last = k == steps - 1
            t = torch.full((x.shape[0],), grid[k], device=x.device)
            if method == "remdm":
                x = self._remdm_step(x, free, t, kappa[k], kappa[k + 1], eta, remask)
                continue
            if method in ("threshold", "left_threshold"):
                tokens, conf = self._draw(x, t, masked)
                if last:
                    chosen = masked
                else:
                    anchor = "left" if method == "left_threshold" else "confidence"
                    chosen = _above_threshold(masked, conf, threshold, anchor)
                x = torch.where(chosen, tokens, x)
                continue
            done = total - masked.sum(-1)
            target = torch.floor(total.double() * kappa[k + 1] + 0.5).long()
            count = (total if last else target.clamp(max=total)) - done
            if method == "confidence":
                tokens, score = self._draw(x, t, masked & (count > 0).unsqueeze(-1))
                if choice_temperature > 0:
                    noise = -torch.log(-torch.log(self._uniform(score, generator)))
                    score = score.log() + choice_temperature * (1.0 - k / steps) * noise
                chosen = _top_count(torch.where(masked, score, -torch.inf), count) & masked
            else:  # random: the positions do not depend on the tokens, so draw only theirs
                score = self._uniform(masked, generator)
                chosen = _top_count(torch.where(masked, score, -1.0), count) & masked
                tokens, _ = self._draw(x, t, chosen)
            x = torch.where(chosen, tokens, x)
        return x

    # ---- steps ----

    def _remdm_step(self, x, free, t, k, k_next, eta, remask) -> Tensor:
        masked = (x == self.mask_token) & free
        decoded = free & ~masked
        if k <= 0.0:
            sigma = 0.0
        else:
            sigma_max = min(1.0, (1.0 - k_next) / k)
            sigma = min(eta, sigma_max) if remask == "cap" else eta * sigma_max
        unmask_p = 1.0 if k >= 1.0 else min(max((k_next - (1.0 - sigma) * k) / (1.0 - k), 0.0), 1.0)
        gen = self._draw_kw["generator"]
        u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=gen)
        go = masked & (u < unmask_p)
        back = decoded & (u < sigma)
        tokens, _ = self._draw(x, t, go)
        x = torch.where(go, tokens, x)
        return torch.where(back, torch.full_like(x, self.mask_token), x)

    def _first_hitting(self, x: Tensor, free: Tensor, generator) -> Tensor:
        batch = x.shape[0]
        t = torch.zeros(batch, dtype=torch.float64, device=x.device)
        one_minus = torch.ones(batch, dtype=torch.float64, device=x.device)
        # each step decodes one position of every row that has one left: max-count steps in all
        for _ in range(int(((x == self.mask_token) & free).sum(-1).max())):  # the one host read
            masked = (x == self.mask_token) & free
            n = masked.sum(-1)
            u = torch.rand(batch, dtype=torch.float64, device=x.device, generator=generator)
            # 1 - kappa_s = (1 - kappa_t) U^(1/n): the first of n exponential clocks in kappa-time
            one_minus = torch.where(n > 0, one_minus * u.pow(1.0 / n.clamp_min(1)), one_minus)
            t = self.scheduler.kappa_inverse((1.0 - one_minus).clamp(0.0, 1.0)).clamp(0.0, 1.0)
            pick = self._uniform(torch.zeros_like(masked, dtype=torch.float64), generator)
            pos = torch.where(masked, pick, -1.0).argmax(-1, keepdim=True)
            chosen = torch.zeros_like(masked).scatter_(-1, pos, True) & masked
            tokens, _ = self._draw(x, t.to(torch.get_default_dtype()), chosen)
            x = torch.where(chosen, tokens, x)
        return x

    # ---- pieces ----

    def _draw(self, x: Tensor, t: Tensor, where: Tensor) -> tuple[Tensor, Tensor]:
        """A token per position from the filtered posterior, and that token's probability.

        Only the positions of the bool ``where`` are drawn (elsewhere: the token of ``x`` and
        probability 0). On the CPU the model's output is cut to those rows first, so the
        float64 work scales with the positions decoded, not with ``B * L``; on an accelerator
        every position is processed (cutting would need the count on the host). The draw is
        exact inverse-CDF sampling in ``dtype_categorical``: one uniform per position (keep the
        float64 default for large vocabularies: in float32 the cumulative sum cannot resolve
        tokens of probability below about 6e-8).
        """
        kw = self._draw_kw
        rows = where.nonzero(as_tuple=True) if _host_reads_free(x) else None
        if rows is not None and rows[0].numel() == 0:  # nothing to draw: no model call
            return x, torch.zeros(x.shape, dtype=kw["dtype"], device=x.device)
        logits = self._logits(x, t, kw["extras"], rows)
        if kw["guidance_scale"] != 0:
            uncond = self._logits(x, t, kw["uncond"], rows)
            w = kw["guidance_scale"]
            q = (1.0 + w) * torch.softmax(logits, -1) - w * torch.softmax(uncond, -1)
            logits = q.clamp_min_(0.0).log_()
        if kw["temperature"] != 1.0:
            logits = logits / kw["temperature"]
        if kw["top_k"] is not None or kw["top_p"] is not None:
            logits = _filter(logits, kw["top_k"], kw["top_p"])
        p = torch.softmax(logits, dim=-1)  # [N, V] in dtype_categorical
        cdf = p.cumsum(-1)
        total = cdf[:, -1:]
        u = torch.rand(total.shape, dtype=p.dtype, device=p.device, generator=kw["generator"])
        # strictly below the total: the token found always has positive probability
        v = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
        drawn = torch.searchsorted(cdf, v, right=True).clamp_max_(p.shape[-1] - 1)
        prob = p.gather(-1, drawn) / total
        if rows is None:
            tokens = torch.where(where, drawn.view(x.shape), x)
            return tokens, torch.where(where, prob.view(x.shape), 0.0)
        tokens, conf = x.clone(), torch.zeros(x.shape, dtype=prob.dtype, device=x.device)
        tokens[rows], conf[rows] = drawn.squeeze(-1), prob.squeeze(-1)
        return tokens, conf

    def _logits(self, x: Tensor, t: Tensor, extras: dict, rows=None) -> Tensor:
        """Posterior logits ``[N, V]`` in ``dtype_categorical``, the mask ruled out (``-inf``).

        ``N`` counts the positions ``rows`` selects (all ``B * L`` when ``None``). Unnormalised:
        a softmax gives the posterior.
        """
        out = self.model(x=x, t=t, **extras)
        self.last_nfe += 1
        if out.shape != (*x.shape, self.vocabulary_size):
            raise ValueError(
                f"model output must have shape {(*x.shape, self.vocabulary_size)}, "
                f"got {tuple(out.shape)}"
            )
        out = out.reshape(-1, self.vocabulary_size) if rows is None else out[rows]
        logits = out.to(self._draw_kw["dtype"], copy=True)
        if self.model_output == "probs":
            logits = logits.clamp_min_(0.0).log_()
        logits[:, self.mask_token] = -torch.inf
        return logits

    def _uniform(self, like: Tensor, generator) -> Tensor:
        return torch.rand(like.shape, dtype=torch.float64, device=like.device, generator=generator)

    def _check(self, x_init, steps, method, temperature, top_k, top_p, threshold, eta, remask):
        check_tokens(x_init, "x_init", self.vocabulary_size)
        if x_init.ndim != 2:
            raise ValueError(f"x_init must have shape [B, L], got {tuple(x_init.shape)}")
        if method not in MASKED_METHODS:
            raise ValueError(f"method must be one of {MASKED_METHODS}, got {method!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        if not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        if top_p is not None and not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        if not 0 <= eta <= 1:
            raise ValueError(f"eta must be in [0, 1], got {eta!r}")
        if remask not in ("cap", "rescale"):
            raise ValueError(f"remask must be 'cap' or 'rescale', got {remask!r}")


def _host_reads_free(x: Tensor) -> bool:
    """Whether reading ``x``'s values on the host costs no device sync: eager mode on the CPU."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def _filter(logp: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    """Rule out (``-inf``) tokens outside the top-k and outside the nucleus of mass ``top_p``."""
    if top_k is not None and top_k < logp.shape[-1]:
        kth = logp.topk(top_k, dim=-1).values[..., -1:]
        logp = logp.masked_fill(logp < kth, -torch.inf)
    if top_p is not None and top_p < 1:
        p = torch.softmax(logp, dim=-1)
        sorted_p, order = p.sort(dim=-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass of the tokens ranked above
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logp = logp.masked_fill(drop, -torch.inf)
    return logp


def _top_count(score: Tensor, count: Tensor) -> Tensor:
    """Bool ``[B, L]``: the ``count[b]`` highest scores of each row (``count`` may differ by row)."""
    rank = score.argsort(dim=-1, descending=True).argsort(dim=-1)
    return rank < count.unsqueeze(-1)


def _check_fixed_mask(x_init: Tensor, fixed_mask: Tensor | None) -> None:
    """``fixed_mask`` is ``None`` or a bool tensor of ``x_init``'s shape on its device."""
    if fixed_mask is None:
        return
    check_tensor(fixed_mask, "fixed_mask")
    check_same_device([("x_init", x_init), ("fixed_mask", fixed_mask)])
    if fixed_mask.dtype != torch.bool or fixed_mask.shape != x_init.shape:
        raise ValueError(
            f"fixed_mask must be a bool tensor of shape {tuple(x_init.shape)}, "
            f"got {fixed_mask.dtype} {tuple(fixed_mask.shape)}"
        )


def _above_threshold(masked: Tensor, conf: Tensor, threshold: float, anchor: str) -> Tensor:
    """Masked positions with confidence ``>= threshold``, and with them always one more: the most
    confident masked position (``anchor="confidence"``) or the leftmost (``"left"``)."""
    chosen = masked & (conf >= threshold)
    if anchor == "left":  # argmax returns the first maximum: the leftmost masked position
        best = masked.to(torch.uint8).argmax(-1, keepdim=True)
    else:
        best = torch.where(masked, conf, -1.0).argmax(-1, keepdim=True)
    chosen.scatter_(-1, best, True)
    return chosen & masked
