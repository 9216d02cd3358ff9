"""fm-text: judge score, entropy, calls and speed of the masked decoders against their knob.

    OMP_NUM_THREADS=1 python benchmarks/text_choice_temperature.py --flow RUN --ar RUN \\
        --taus 0 4.5 6 7 8 --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/text_choice_temperature.py --flow BLOCK_RUN --ar RUN \\
        --taus --thresholds 1 0.9 0.8 --seeds 0 1 2 --batch-sizes 32 1

One JSON line per (sampler, knob, seed, batch size): ``judge_bpc`` (``fm_text.judge``'s
character 6-gram model fitted on half of the corpus' documents, which neither model is),
``entropy`` (unigram token entropy, bits; the validation text's is printed first, over as many
tokens), ``calls_per_token`` (network passes per generated position and batch), ``cpu_s``
(process time of the sampling) and ``tokens_per_s`` (wall clock): single timings, the first row
cold, a rough guide only; speed figures come from ``benchmarks/text_samplers.py``'s interleaved
medians. Rows: the ar model with its KV
cache, ``confidence`` at each choice temperature ``--taus`` (MaskGIT's order noise) and
``left_threshold`` at each ``--thresholds``, drawn exactly as ``fm-text sample --sampler ...``
draws them. ``--batch-sizes``: sequences per sampler call (the samples' law does not depend on
it; the speed does: ``left_threshold`` decodes a batch until its slowest row is done). The rows
of docs/apps/text.md ("The default sampler") come from this script.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from fm_text.evaluate import char_judge, unigram_entropy
from fm_text.run import load_run, prepare_data
from fm_text.sample import sample_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--flow", required=True, help="a mask-source flow run")
    p.add_argument("--ar", required=True, help="an ar run on the same data")
    p.add_argument("--taus", type=float, nargs="*", default=[0.0, 4.5, 6.0, 7.0, 8.0])
    p.add_argument("--thresholds", type=float, nargs="*", default=[])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num", type=int, default=32)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    p.add_argument("--steps", type=int, default=None, help="default: one per token")
    a = p.parse_args()
    torch.set_num_threads(1)
    flow, ar = load_run(a.flow, checkpoint="best"), load_run(a.ar, checkpoint="best")
    tok, cfg = flow.tokenizer, flow.config
    judge = char_judge(cfg.data)
    chunks = prepare_data(cfg, flow.run_dir, cfg.cache_dir, write=False).val.chunks(
        cfg.context, 0, None
    )
    ref = chunks[:: max(1, chunks.shape[0] // a.num)][: a.num]
    texts = [tok.decode(r.tolist()) for r in ref]
    print(json.dumps({"sampler": "validation", "judge_bpc": judge.score(texts),
                      "entropy": unigram_entropy(ref, tok.vocab_size)}), flush=True)  # fmt: skip
    runs = [("ar+kv", ar, {})]
    runs += [("confidence", flow, {"choice_temperature": tau}) for tau in a.taus]
    runs += [("left_threshold", flow, {"threshold": th}) for th in a.thresholds]
    for name, run, knob in runs:
        kw = {} if name == "ar+kv" else {"sampler": name, **knob}
        for seed in a.seeds:
            for batch in a.batch_sizes:
                t0, c0 = time.perf_counter(), time.process_time()
                s = sample_run(run, a.num, steps=a.steps, seed=seed, batch_size=batch, **kw)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                row = {
                    "sampler": name, **knob, "seed": seed, "batch_size": batch, "steps": s.steps,
                    "judge_bpc": judge.score(s.texts),
                    "entropy": unigram_entropy(s.tokens, tok.vocab_size),
                    "calls_per_token": s.calls_per_token, "cpu_s": cpu,
                    "tokens_per_s": s.tokens.numel() / wall,
                }  # fmt: skip
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
