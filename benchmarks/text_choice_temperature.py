"""fm-text: judge score and entropy of confidence decoding against MaskGIT's choice temperature.

    OMP_NUM_THREADS=1 python benchmarks/text_choice_temperature.py --flow RUN --ar RUN \\
        --taus 0 4.5 6 7 8 --seeds 0 1 2

One JSON line per (sampler, choice temperature, seed): ``judge_bpc`` (``fm_text.judge``'s
character 6-gram model fitted on half of the corpus' documents, which neither model is),
``entropy`` (unigram token entropy, bits; the validation text's is printed first, over as many
tokens), ``cpu_s`` (process time of the sampling) and ``nfe``. The flow samples are drawn exactly
as ``fm-text sample --sampler confidence --choice-temperature TAU`` draws them; the ar samples
with its KV cache. The rows of docs/apps/text.md ("The default sampler") come from this script.
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
    p.add_argument("--taus", type=float, nargs="+", default=[0.0, 4.5, 6.0, 7.0, 8.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num", type=int, default=32)
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
    runs = [("ar+kv", ar, None)] + [("confidence", flow, tau) for tau in a.taus]
    for name, run, tau in runs:
        for seed in a.seeds:
            kw = {} if tau is None else {"sampler": "confidence", "choice_temperature": tau}
            t0 = time.process_time()
            s = sample_run(run, a.num, steps=a.steps, seed=seed, batch_size=a.num, **kw)
            row = {
                "sampler": name, "choice_temperature": tau, "seed": seed, "steps": s.steps,
                "judge_bpc": judge.score(s.texts),
                "entropy": unigram_entropy(s.tokens, tok.vocab_size),
                "cpu_s": time.process_time() - t0,
            }  # fmt: skip
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
