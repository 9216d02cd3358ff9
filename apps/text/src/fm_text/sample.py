"""Sampling: the flow model through fm-discrete's samplers (with infilling), the baseline with a KV cache.

Flow samplers (``SAMPLERS``): ``euler``, fm-discrete's ``MixtureDiscreteEulerSolver`` on a uniform
grid of ``steps``; the others are ``MaskedDiffusionSampler`` methods (mask-source runs only):
``random``, ``confidence``, ``threshold``, ``left_threshold``, ``remdm`` and ``first_hitting`` (one
call per token).
``auto`` (the default) is ``confidence`` with MaskGIT's choice temperature
(``DEFAULT_CHOICE_TEMPERATURE``) and one step per generated token on mask-source runs,
``left_threshold`` on block diffusion runs, and ``euler`` with 128 steps on uniform-source runs:
chosen by the judge measurements in benchmarks/RESULTS.md (fm-text samplers, block diffusion).

Block diffusion runs (``block_size > 0``) decode one block at a time with a masked decoder
(``auto``: ``left_threshold``; ``steps`` counts the steps per block, at most one per token), the
network reading the KV cache of the clean blocks before it; a finished block joins the cache in
the first call of the next block (one pass over ``[clean block ; next block]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fm_discrete import MaskedDiffusionSampler, MaskedPosterior, MixtureDiscreteEulerSolver
from fm_discrete.solver import MASKED_METHODS
from fm_text.model import KVCache
from fm_text.objective import FlowObjective
from fm_text.run import TrainedRun

__all__ = [
    "DEFAULT_CHOICE_TEMPERATURE",
    "DEFAULT_SAMPLER",
    "DEFAULT_THRESHOLD",
    "SAMPLERS",
    "Samples",
    "infill_layout",
    "resolve_sampler",
    "sample_run",
]

SAMPLERS = ("auto", "euler", *MASKED_METHODS)
#: Chosen by the measurements in benchmarks/RESULTS.md (fm-text samplers).
DEFAULT_SAMPLER = "auto"
#: MaskGIT's Gumbel noise on the confidence order (``confidence`` only); chosen by measurement.
DEFAULT_CHOICE_TEMPERATURE = 6.0
#: Confidence above which the threshold samplers decode a position early.
DEFAULT_THRESHOLD = 0.9
THRESHOLD_SAMPLERS = ("threshold", "left_threshold")
#: ``sample_run``'s sampler options: default, the samplers that take it, the error's reason.
_SAMPLER_OPTIONS = {
    "choice_temperature": (
        DEFAULT_CHOICE_TEMPERATURE,
        ("confidence",),
        "it orders the confidence sampler only",
    ),
    "threshold": (
        DEFAULT_THRESHOLD,
        THRESHOLD_SAMPLERS,
        f"it applies to {' and '.join(THRESHOLD_SAMPLERS)} only",
    ),
}
#: Euler steps when ``steps`` is not given.
DEFAULT_EULER_STEPS = 128


@dataclass
class Samples:
    """Generated sequences.

    Attributes:
        tokens: long ``[K, L]``.
        fixed: bool ``[L]``, ``True`` at prompt and suffix positions.
        texts: the decoded sequences.
        sampler: the sampler that drew them (``auto`` resolved; ``ar+kv`` for ar runs).
        steps: its steps (per block on block diffusion runs; ``None`` for ar runs).
        calls_per_token: network passes per generated position (a pass serves a whole batch;
            an ar run makes one per token, a block diffusion run with ``left_threshold`` fewer).
    """

    tokens: Tensor
    fixed: Tensor
    texts: list[str]
    sampler: str = "ar+kv"
    steps: int | None = None
    calls_per_token: float = 1.0


def resolve_sampler(run: TrainedRun, sampler: str, steps: int | None, length: int):
    """``(sampler, steps)`` with ``auto`` and ``steps=None`` made concrete for ``run``.

    ``auto``: ``left_threshold`` on a block diffusion run, ``confidence`` on another mask-source
    flow run, else ``euler``. ``steps=None``: 128 Euler
    steps; one step per generated position for the masked decoders (``length``: the positions
    not fixed by a prompt or suffix); on block diffusion runs, steps per block, one per token.
    """
    cfg = run.config
    if cfg.model != "flow":
        return "ar+kv", None
    if sampler == "auto" and cfg.block_size:
        sampler = "left_threshold"
    elif sampler == "auto":
        sampler = "confidence" if cfg.source == "mask" else "euler"
    if steps is None:
        steps = DEFAULT_EULER_STEPS if sampler == "euler" else length
        if cfg.block_size:
            steps = cfg.block_size
    return sampler, steps


def infill_layout(
    prompt_ids: list[int], suffix_ids: list[int], length: int, fill_id: int
) -> tuple[Tensor, Tensor]:
    """The initial sequence ``[length]`` (prompt, ``fill_id``..., suffix) and its fixed mask ``[length]``.

    Raises:
        ValueError: prompt and suffix leave no position to generate.
    """
    n_fixed = len(prompt_ids) + len(suffix_ids)
    if n_fixed >= length:
        raise ValueError(
            f"prompt/suffix: they take {n_fixed} tokens, leaving nothing to generate in "
            f"--length {length}; shorten them or raise --length"
        )
    tokens = torch.full((length,), fill_id, dtype=torch.long)
    fixed = torch.zeros(length, dtype=torch.bool)
    if prompt_ids:
        tokens[: len(prompt_ids)] = torch.tensor(prompt_ids)
        fixed[: len(prompt_ids)] = True
    if suffix_ids:
        tokens[length - len(suffix_ids) :] = torch.tensor(suffix_ids)
        fixed[length - len(suffix_ids) :] = True
    return tokens, fixed


class _Tempered(nn.Module):
    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.model(x, t) / self.temperature


def _check(num: int, steps: int, temperature: float, length: int, context: int) -> None:
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= context:
        raise ValueError(
            f"length must be an int in [1, {context}] (the model context), got {length!r}"
        )


@torch.no_grad()
def sample_run(
    run: TrainedRun,
    num: int,
    *,
    steps: int | None = None,
    length: int | None = None,
    temperature: float = 1.0,
    prompt: str = "",
    suffix: str = "",
    seed: int = 0,
    batch_size: int = 64,
    sampler: str = DEFAULT_SAMPLER,
    choice_temperature: float = DEFAULT_CHOICE_TEMPERATURE,
    threshold: float = DEFAULT_THRESHOLD,
) -> Samples:
    """Draw ``num`` sequences from a trained run.

    Args:
        run: a loaded run (``load_run``).
        num: number of sequences.
        steps: steps of the flow sampler (``None``: 128 Euler steps, or one per position for
            the masked decoders; ignored by ``ar`` runs).
        length: tokens per sequence, at most the model's context (default: the context).
        temperature: divides the logits.
        prompt: text whose tokens start every sequence and stay fixed.
        suffix: text whose tokens end every sequence and stay fixed (flow runs only).
        seed: seed of the sampler's generator.
        batch_size: sequences per solver call.
        sampler: one of ``SAMPLERS`` (flow runs; ``euler`` is the only one for uniform sources;
            ``auto`` picks, see the module notes).
        choice_temperature: MaskGIT's Gumbel noise on the order of ``confidence`` (``>= 0``).
        threshold: confidence above which ``threshold`` and ``left_threshold`` decode a position
            early, in ``(0, 1]``.

    Returns:
        ``Samples``.
    """
    cfg, tok, net = run.config, run.tokenizer, run.net
    length = cfg.context if length is None else length
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    ct = choice_temperature
    if isinstance(ct, bool) or not isinstance(ct, (int, float)) or not 0 <= ct < math.inf:
        raise ValueError(f"choice_temperature must be a finite number >= 0, got {ct!r}")
    th = threshold
    if isinstance(th, bool) or not isinstance(th, (int, float)) or not 0 < th <= 1:
        raise ValueError(f"threshold must be a number in (0, 1], got {th!r}")
    _check(num, 1 if steps is None else steps, temperature, length, cfg.context)
    prompt_ids = tok.encode(prompt) if prompt else []
    suffix_ids = tok.encode(suffix) if suffix else []
    free = length - len(prompt_ids) - len(suffix_ids)  # the positions generated
    sampler, steps = resolve_sampler(run, sampler, steps, max(free, 1))
    extra = _sampler_options(sampler, choice_temperature=ct, threshold=th)
    if cfg.model == "flow" and sampler != "euler" and cfg.source != "mask":
        raise ValueError(
            f"sampler: {sampler!r} decodes masks; this run's source is uniform, use euler"
        )
    if cfg.model == "ar" and suffix:
        raise ValueError("suffix: autoregressive runs continue a prompt only; drop --suffix")
    if cfg.block_size and suffix:
        raise ValueError("suffix: block diffusion runs continue a prompt only; drop --suffix")
    if cfg.block_size and sampler == "euler":
        raise ValueError("sampler: block diffusion runs decode with a masked decoder, not euler")
    template, fixed = infill_layout(prompt_ids, suffix_ids, length, tok.mask_id)
    device = next(net.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    solver = None
    if cfg.model == "flow" and not cfg.block_size:
        solver = _flow_solver(run, temperature) if sampler == "euler" else _masked_sampler(run)
    out, calls = [], []
    counter = net.register_forward_hook(lambda *_: calls.append(1))  # network passes
    try:
        for start in range(0, num, batch_size):
            b = min(batch_size, num - start)
            if cfg.block_size:
                tokens = template.to(device).expand(b, -1).clone()
                out.append(
                    _sample_blocks(
                        run, tokens, fixed.to(device), steps, sampler, temperature, generator, extra
                    )
                )
            elif solver is not None:
                tokens = template.to(device).expand(b, -1).clone()
                mask = fixed.to(device).expand(b, -1).clone()
                # float64 draws (the samplers' default): float32 noise misses rare tokens.
                if sampler == "euler":
                    out.append(solver.infill(tokens, mask, 1.0 / steps, generator=generator))
                else:
                    out.append(
                        solver.sample(
                            tokens,
                            steps,
                            method=sampler,
                            temperature=temperature,
                            fixed_mask=mask,
                            generator=generator,
                            **extra,
                        )
                    )
            else:
                out.append(_sample_ar(run, prompt_ids, length, b, temperature, generator, device))
    finally:
        counter.remove()
    tokens = torch.cat(out).cpu()
    texts = [tok.decode(row.tolist()) for row in tokens]
    per_token = len(calls) / (len(out) * max(free, 1))
    return Samples(tokens, fixed, texts, sampler, steps, calls_per_token=per_token)


def _sampler_options(sampler: str, **given) -> dict:
    """The options of ``given`` that ``sampler`` takes; one set away from its default for a
    sampler that does not take it is an error (it would be ignored silently)."""
    out = {}
    for name, value in given.items():
        default, takers, reason = _SAMPLER_OPTIONS[name]
        if sampler in takers:
            out[name] = value
        elif value != default:
            raise ValueError(f"{name}: {reason}; this run samples with {sampler}")
    return out


def _flow_solver(run, temperature: float) -> MixtureDiscreteEulerSolver:
    cfg, tok = run.config, run.tokenizer
    objective = FlowObjective.from_config(cfg, tok)
    return MixtureDiscreteEulerSolver(
        _Tempered(objective.posterior(run.net), temperature),
        objective.path,
        tok.vocab_size,
        objective.p0,
        mask_token=tok.mask_id if cfg.source == "mask" else None,
        model_output="logits",
    )


def _masked_sampler(run) -> MaskedDiffusionSampler:
    cfg, tok = run.config, run.tokenizer
    objective = FlowObjective.from_config(cfg, tok)
    return MaskedDiffusionSampler(
        objective.posterior(run.net),
        tok.vocab_size,
        tok.mask_id,
        scheduler=objective.path.scheduler,
        model_output="logits",
    )


class _BlockNet(nn.Module):
    """The network as the masked decoder sees it while it decodes one block.

    Reads the KV cache of the clean prefix and does not keep the block in it. ``pending``, a
    finished block not yet in the cache, joins it in the next call: one pass over
    ``[pending ; block]``, the pending rows blind to the block (block diffusion's mask).
    """

    def __init__(self, net: nn.Module, cache: KVCache) -> None:
        super().__init__()
        self.net, self.cache = net, cache
        self.pending: Tensor | None = None

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self.pending is None:
            return self.net(x, cache=self.cache, commit=0)
        n, start = self.pending.shape[1], self.cache.length
        mask = torch.ones(2 * n, start + 2 * n, dtype=torch.bool, device=x.device)
        mask[:n, start + n :] = False
        both = torch.cat((self.pending, x), dim=1)
        self.pending = None
        hidden = self.net(both, cache=self.cache, commit=n, mask=mask, return_hidden=True)
        return self.net.head(hidden[:, n:])  # logits of the block only

    def flush(self) -> None:
        """Put ``pending`` into the cache (a block whose decoding made no call)."""
        if self.pending is not None:
            self.net(self.pending, cache=self.cache)
            self.pending = None


def _sample_blocks(run, tokens, fixed, steps, sampler, temperature, generator, extra) -> Tensor:
    """Block diffusion: decode ``tokens`` ``[B, L]`` (masks where ``fixed`` is off) block by block."""
    net, tok = run.net, run.tokenizer
    bs = run.config.block_size
    batch, length = tokens.shape
    padded = -(-length // bs) * bs  # whole blocks (the model's convolution reads whole blocks)
    x = torch.full((batch, padded), tok.mask_id, dtype=torch.long, device=tokens.device)
    x[:, :length] = tokens
    keep = torch.zeros(padded, dtype=torch.bool, device=tokens.device)
    keep[:length] = fixed
    cache = KVCache(net.config, batch, tokens.device, next(net.parameters()).dtype)
    model = _BlockNet(net, cache)
    objective = FlowObjective.from_config(run.config, tok)
    solver = MaskedDiffusionSampler(
        MaskedPosterior(model, tok.mask_id),
        tok.vocab_size,
        tok.mask_id,
        scheduler=objective.path.scheduler,
        model_output="logits",
    )
    for lo in range(0, padded, bs):
        block, held = x[:, lo : lo + bs], keep[lo : lo + bs].expand(batch, -1)
        if not bool(((block == tok.mask_id) & ~held).any()):  # a prompt block
            model.flush()
        else:
            block = solver.sample(
                block, steps, method=sampler, temperature=temperature, fixed_mask=held,
                generator=generator, **extra,
            )  # fmt: skip
            model.flush()  # the decoder made no call (nothing left to decode)
            x[:, lo : lo + bs] = block
        model.pending = block if lo + bs < padded else None
    return x[:, :length]


def _sample_ar(run, prompt_ids, length, batch, temperature, generator, device) -> Tensor:
    net, tok = run.net, run.tokenizer
    cache = KVCache(net.config, batch, device, next(net.parameters()).dtype)
    head = torch.tensor([tok.eos_id, *prompt_ids], device=device).expand(batch, -1)
    out = torch.empty(batch, length, dtype=torch.long, device=device)
    out[:, : len(prompt_ids)] = head[:, 1:]
    logits = net(head, cache=cache)[:, -1]
    for i in range(len(prompt_ids), length):
        logits[:, tok.mask_id] = -torch.inf
        probs = torch.softmax(logits.double() / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=generator)
        out[:, i : i + 1] = nxt
        if i + 1 < length:
            logits = net(nxt, cache=cache)[:, -1]
    return out
