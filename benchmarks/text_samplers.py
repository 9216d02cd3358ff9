"""fm-text sampler comparison: judge bpc, unigram entropy and tokens/s per sampler and step count.

    OMP_NUM_THREADS=1 python benchmarks/text_samplers.py --flow RUN --ar RUN --out rows.jsonl

One JSON line per (sampler, steps): ``judge_bpc`` (character 6-gram judge fitted on half of the
corpus' documents, ``fm_text.judge``), ``entropy`` (unigram token entropy, bits) and
``tokens_per_s`` (one thread, ``--num`` sequences in one batch), plus the validation reference
and the ar baseline with its KV cache. ``--speed-lengths`` adds a speed-only comparison at longer
lengths on untrained networks of the runs' size (speed does not depend on the weights for
samplers with a fixed number of calls).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from fm_text.evaluate import char_judge, unigram_entropy
from fm_text.run import load_run, prepare_data
from fm_text.sample import sample_run

CONFIGS = [
    ("euler", 32),
    ("euler", 64),
    ("euler", 128),
    ("random", 16),
    ("random", 32),
    ("random", 64),
    ("confidence", 16),
    ("confidence", 32),
    ("confidence", 64),
    ("threshold", 64),
    ("remdm", 64),
    ("first_hitting", 64),
]


def _sampler_kw(sampler: str) -> dict:
    """``sample_run`` options of a row: ``confidence`` rows are plain confidence (no order noise;
    ``benchmarks/text_choice_temperature.py`` sweeps the noise)."""
    if sampler == "ar+kv":
        return {}
    return {"sampler": sampler, **({"choice_temperature": 0.0} if sampler == "confidence" else {})}


def _emit(out, row):
    print(json.dumps(row), flush=True)
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")


def quality(args) -> None:
    flow, ar = load_run(args.flow, checkpoint="best"), load_run(args.ar, checkpoint="best")
    tok, cfg = flow.tokenizer, flow.config
    judge = char_judge(cfg.data)
    data = prepare_data(cfg, flow.run_dir, cfg.cache_dir, write=False)
    chunks = data.val.chunks(cfg.context, 0, None)
    ref = chunks[:: max(1, chunks.shape[0] // args.num)][: args.num]
    texts = [tok.decode(r.tolist()) for r in ref]
    base = {"flow_step": flow.step, "ar_step": ar.step, "num": args.num, "length": cfg.context}
    _emit(
        args.out,
        {
            **base,
            "sampler": "validation",
            "judge_bpc": judge.score(texts),
            "entropy": unigram_entropy(ref, tok.vocab_size),
        },
    )
    runs = [("ar+kv", 0, ar)] + [(s, n, flow) for s, n in CONFIGS if s in args.samplers]
    for sampler, steps, run in runs:
        t0 = time.perf_counter()
        kw = _sampler_kw(sampler)
        s = sample_run(
            run, args.num, steps=max(steps, 1), seed=args.seed, batch_size=args.num, **kw
        )
        dt = time.perf_counter() - t0
        _emit(
            args.out,
            {
                **base,
                "sampler": sampler,
                "steps": steps,
                "judge_bpc": judge.score(s.texts),
                "entropy": unigram_entropy(s.tokens, tok.vocab_size),
                "tokens_per_s": s.tokens.numel() / dt,
                "seconds": dt,
                "example": s.texts[0][:240],
            },
        )


def speed(args) -> None:
    from fm_text.model import TextTransformer
    from fm_text.run import TrainedRun

    for length in args.speed_lengths:
        rows = {}
        for name in ("ar", "flow"):
            run = load_run(args.ar if name == "ar" else args.flow, checkpoint="best")
            cfg = dataclasses.replace(run.config, context=length)
            net = TextTransformer(cfg.model_config(run.tokenizer.vocab_size)).eval()
            fake = TrainedRun(**{**run.__dict__, "config": cfg, "net": net})
            todo = [("ar+kv", 1)] if name == "ar" else [(s, n) for s, n in args.speed_configs]
            for sampler, steps in todo:
                kw = _sampler_kw(sampler)
                t0 = time.perf_counter()
                s = sample_run(
                    fake, args.num, steps=steps, length=length, batch_size=args.num, **kw
                )
                dt = time.perf_counter() - t0
                rows[(sampler, steps)] = s.tokens.numel() / dt
                _emit(
                    args.out,
                    {
                        "speed_only": True,
                        "length": length,
                        "sampler": sampler,
                        "steps": steps,
                        "tokens_per_s": s.tokens.numel() / dt,
                    },
                )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--flow", required=True)
    p.add_argument("--ar", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samplers", nargs="*", default=sorted({s for s, _ in CONFIGS}))
    p.add_argument("--speed-lengths", nargs="*", type=int, default=[])
    p.add_argument("--speed-configs", nargs="*", default=["confidence:16", "random:16", "euler:64"])
    p.add_argument("--skip-quality", action="store_true")
    args = p.parse_args()
    args.speed_configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.speed_configs]
    torch.set_num_threads(1)
    if not args.skip_quality:
        quality(args)
    if args.speed_lengths:
        speed(args)


if __name__ == "__main__":
    main()
