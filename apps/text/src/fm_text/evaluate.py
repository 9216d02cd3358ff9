r"""Evaluation on the validation split: likelihood (bound), bits per byte, and sample statistics.

- ``ppl_bound``: flow runs, $\exp$ of fm-discrete's ``MixturePathELBO`` NLL bound per token; ar runs,
  their exact perplexity; both on the same validation sequences (the split cut into ``context``-token
  pieces).
- ``bits_per_byte``: the same NLL in bits over the UTF-8 bytes those tokens stand for.
- ``ppl_left`` (mask-source flow runs): the *exact* perplexity of left-to-right decoding
  (``--sampler left_threshold --threshold 1``, one step per token) on the same sequences:
  ``FlowObjective.left_to_right_nll``, one pass per position of a block (``context`` passes on a
  plain run). The likelihood of what that sampler generates, not a bound.
- ``sample_entropy``: unigram entropy (bits) of the tokens of ``num_samples`` samples drawn at the
  default settings, next to ``val_entropy``, the same statistic of as many validation sequences
  (same token count, so the plug-in estimator's bias is the same on both sides).
- ``gen_ppl``: perplexity of the samples under a judge, an autoregressive run on the same
  tokenizer that did not generate them.
- ``judge_bpc``: bits per character of the decoded samples under ``CharNgramJudge``, a character
  6-gram model fitted on half of the corpus' documents (neither model); ``val_judge_bpc`` is the
  same score of the validation sequences the entropies compare with.
- ``sampler``, ``tokens_per_s``, ``calls_per_token``: the flow sampler used, the sampling speed
  (generated tokens per second of wall-clock, on the threads torch is given) and the network
  passes per generated position (a pass serves a whole batch).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import Tensor

from fm_text.data.corpus import load_corpus
from fm_text.judge import CharNgramJudge, judge_documents
from fm_text.objective import FlowObjective, ar_nll
from fm_text.run import TrainedRun, load_run, prepare_data
from fm_text.sample import (
    DEFAULT_CHOICE_TEMPERATURE,
    DEFAULT_SAMPLER,
    DEFAULT_THRESHOLD,
    sample_run,
)
from fm_text.train import validation_nll

__all__ = ["char_judge", "evaluate_run", "unigram_entropy"]


def char_judge(data: str, order: int = 6) -> CharNgramJudge:
    """The character n-gram judge of a corpus: fitted on the half of its documents ``judge_documents`` picks."""
    docs = load_corpus(data)
    chosen = judge_documents([d.name for d in docs])
    return CharNgramJudge([d.text for d in docs if d.name in chosen], order=order)


def unigram_entropy(tokens: Tensor, vocab_size: int) -> float:
    """Plug-in entropy (bits) of the token histogram of ``tokens`` (any shape)."""
    counts = torch.bincount(tokens.reshape(-1), minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())


def evaluate_run(
    run: TrainedRun,
    *,
    judge: str | Path | None = None,
    num_samples: int = 32,
    sample_steps: int | None = None,
    time_samples: int = 16,
    max_sequences: int | None = None,
    seed: int = 0,
    sampler: str = DEFAULT_SAMPLER,
    choice_temperature: float = DEFAULT_CHOICE_TEMPERATURE,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict:
    """Score a run; returns the JSON-ready dictionary the CLI prints.

    Args:
        run: a loaded run.
        judge: an ``ar`` run on the same tokenizer, to compute ``gen_ppl``.
        num_samples: samples drawn for the sample statistics.
        sample_steps: steps of the flow sampler (``None``: the sampler's default, see
            ``fm_text.sample.resolve_sampler``).
        time_samples: ELBO time strata per validation sequence (flow).
        max_sequences: cap on validation sequences (all by default).
        seed: sampling seed.
        sampler: the flow sampler (``fm_text.sample.SAMPLERS``).
        choice_temperature: the order noise of the ``confidence`` sampler.
        threshold: the early-decoding confidence of the threshold samplers.
    """
    t0 = time.perf_counter()
    judge_run = _load_judge(judge, run)
    cfg, tok = run.config, run.tokenizer
    chunks, total, num_bytes = _validation_nll(run, time_samples, max_sequences)
    tokens = chunks.numel()
    likelihood_seconds = time.perf_counter() - t0

    t_sample = time.perf_counter()
    samples = sample_run(
        run, num_samples, steps=sample_steps, seed=seed, sampler=sampler,
        choice_temperature=choice_temperature, threshold=threshold,
    )  # fmt: skip
    sampling_seconds = time.perf_counter() - t_sample
    step = max(1, chunks.shape[0] // num_samples)
    reference = chunks[::step][:num_samples]
    judge_ngram = char_judge(cfg.data)
    result = {
        "model": cfg.model,
        "checkpoint": run.checkpoint,
        "step": run.step,
        "ppl_bound": math.exp(total / tokens),
        "nll_per_token": total / tokens,
        "bits_per_byte": total / math.log(2.0) / num_bytes,
        "tokens": tokens,
        "sequences": int(chunks.shape[0]),
        "sample_entropy": unigram_entropy(samples.tokens, tok.vocab_size),
        "val_entropy": unigram_entropy(reference, tok.vocab_size),
        "num_samples": num_samples,
        "sample_steps": samples.steps,
        "sampler": samples.sampler,
        "tokens_per_s": samples.tokens.numel() / sampling_seconds,
        "calls_per_token": samples.calls_per_token,
        "judge_bpc": judge_ngram.score(samples.texts),
        "val_judge_bpc": judge_ngram.score([tok.decode(r.tolist()) for r in reference]),
        "likelihood_seconds": likelihood_seconds,
    }
    if cfg.model == "flow":
        result["elbo_time_samples"] = time_samples
    if cfg.model == "flow" and cfg.source == "mask":
        objective = FlowObjective.from_config(cfg, tok)
        device = next(run.net.parameters()).device
        left = objective.left_to_right_nll(run.net.eval(), chunks.to(device).split(32))
        result["ppl_left"] = math.exp(float(left.sum()) / tokens)
    if judge_run is not None:
        with torch.no_grad():
            judged = ar_nll(judge_run.net, samples.tokens, tok.eos_id, tok.mask_id)
        result["gen_ppl"] = math.exp(float(judged.double().mean()))
        result["judge"] = str(judge)
    result["seconds"] = time.perf_counter() - t0
    return result


def _load_judge(judge: str | Path | None, run: TrainedRun) -> TrainedRun | None:
    """The ``ar`` judge run on ``run``'s tokenizer, or ``None``."""
    if judge is None:
        return None
    judge_run = load_run(judge)
    if judge_run.config.model != "ar":
        raise ValueError(f"judge: {judge} is a {judge_run.config.model} run; pass an ar run")
    if judge_run.tokenizer.fingerprint() != run.tokenizer.fingerprint():
        raise ValueError(f"judge: {judge} uses another tokenizer than {run.run_dir}")
    return judge_run


def _validation_nll(run: TrainedRun, time_samples: int, max_sequences: int | None):
    """Validation chunks ``[N, context]``, their summed NLL (nats) and their size in bytes."""
    cfg, tok = run.config, run.tokenizer
    data = prepare_data(cfg, run.run_dir, cfg.cache_dir, write=False)
    chunks = data.val.chunks(cfg.context, 0, max_sequences)
    objective = FlowObjective.from_config(cfg, tok) if cfg.model == "flow" else None
    nll = validation_nll(
        run.net,
        objective,
        chunks,
        bos_id=tok.eos_id,
        mask_id=tok.mask_id,
        num_time_samples=time_samples,
    )
    byte_table = torch.tensor(tok.token_bytes())
    return chunks, float(nll.sum()), int(byte_table[chunks].sum())
