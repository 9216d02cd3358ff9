"""fm-text sampler comparison: judge bpc, unigram entropy and tokens/s per sampler and step count.

    OMP_NUM_THREADS=1 python benchmarks/text_samplers.py --flow RUN --ar RUN --out rows.jsonl

One JSON line per (sampler, steps): ``judge_bpc`` (character 6-gram judge fitted on half of the
corpus' documents, ``fm_text.judge``), ``entropy`` (unigram token entropy, bits) and
``tokens_per_s`` (one thread, ``--num`` sequences in one batch), plus the validation reference
and the ar baseline with its KV cache. ``--speed-lengths`` adds a speed-only comparison at longer
lengths on untrained networks of the runs' size (speed does not depend on the weights for
samplers with a fixed number of calls).

``--compare RUN=SAMPLER:STEPS ...`` adds rows of other flow runs on the same tokenizer (one
judge fit for all). ``--configs SAMPLER:STEPS ...`` replaces the quality rows (``auto`` is fm-text's default sampler,
confidence with its choice temperature; ``confidence`` rows are plain confidence). On a block
diffusion run (``--block-size``) the steps count per block.
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
    base["block_size"] = cfg.block_size
    _emit(
        args.out,
        {
            **base,
            "sampler": "validation",
            "judge_bpc": judge.score(texts),
            "entropy": unigram_entropy(ref, tok.vocab_size),
        },
    )
    configs = args.configs or [(s, n) for s, n in CONFIGS if s in args.samplers]
    runs = [("ar+kv", 0, ar)] + [(s, n, flow) for s, n in configs]
    for item in args.compare:  # RUN=SAMPLER:STEPS rows of another flow run, same judge
        path, config = item.rsplit("=", 1)
        other = load_run(path, checkpoint="best")
        if other.tokenizer.fingerprint() != tok.fingerprint():
            raise SystemExit(f"--compare: {path} uses another tokenizer than --flow")
        runs.append((config.split(":")[0], int(config.split(":")[1]), other))
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
                "run": str(run.run_dir),
                "run_step": run.step,
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
    """Tokens/s per sampler at each length: ``--repeats`` rounds, every row once per round (the
    rows share the machine's load), median wall-clock and median process CPU time."""
    import statistics

    from fm_text.model import TextTransformer
    from fm_text.run import TrainedRun

    for length in args.speed_lengths:
        todo = []
        for name in ("ar", "flow"):
            run = load_run(args.ar if name == "ar" else args.flow, checkpoint="best")
            cfg = dataclasses.replace(run.config, context=length)
            net = TextTransformer(cfg.model_config(run.tokenizer.vocab_size)).eval()
            fake = TrainedRun(**{**run.__dict__, "config": cfg, "net": net})
            configs = [("ar+kv", 1)] if name == "ar" else args.speed_configs
            todo += [(fake, sampler, steps) for sampler, steps in configs]
        times = {i: ([], []) for i in range(len(todo))}
        for _ in range(args.repeats):
            for i, (fake, sampler, steps) in enumerate(todo):
                kw = _sampler_kw(sampler)
                t0, c0 = time.perf_counter(), time.process_time()
                sample_run(fake, args.num, steps=steps, length=length, batch_size=args.num, **kw)
                times[i][0].append(time.perf_counter() - t0)
                times[i][1].append(time.process_time() - c0)
        ar_rate = None
        for i, (fake, sampler, steps) in enumerate(todo):
            wall, cpu = statistics.median(times[i][0]), statistics.median(times[i][1])
            rate = args.num * length / wall
            ar_rate = rate if sampler == "ar+kv" else ar_rate
            _emit(
                args.out,
                {
                    "speed_only": True,
                    "length": length,
                    "sampler": sampler,
                    "steps": steps,
                    "block_size": fake.config.block_size,
                    "tokens_per_s": rate,
                    "vs_ar": rate / ar_rate,
                    "cpu_tokens_per_s": args.num * length / cpu,
                    "repeats": args.repeats,
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
    p.add_argument("--configs", nargs="*", default=[])
    p.add_argument("--compare", nargs="*", default=[], help="RUN=SAMPLER:STEPS rows")
    p.add_argument("--repeats", type=int, default=1, help="speed rounds (median)")
    p.add_argument("--skip-quality", action="store_true")
    args = p.parse_args()
    args.speed_configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.speed_configs]
    args.configs = [(c.split(":")[0], int(c.split(":")[1])) for c in args.configs]
    torch.set_num_threads(1)
    if not args.skip_quality:
        quality(args)
    if args.speed_lengths:
        speed(args)


if __name__ == "__main__":
    main()
