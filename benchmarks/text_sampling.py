"""fm-text sampling speed: the flow model at 32/128/512 Euler steps vs the ar baseline with a KV cache.

Same transformer body (the ``tiny`` preset unless ``--run``-loaded), same batch and length; tokens/s
is generated tokens per second of wall time, median of ``--repeats``. Weights do not change the cost,
so by default untrained models of the preset's shape are timed (``--flow-run``/``--ar-run`` load
trained runs instead). The ar baseline is also timed without its cache, to show what the cache buys.

Run: ``python benchmarks/text_sampling.py [--batch 8] [--length 128] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fm_text.config import TrainConfig
from fm_text.model import TextTransformer
from fm_text.run import TrainedRun, load_run
from fm_text.sample import sample_run


class _Tok:
    """Just what sampling needs from a tokenizer (ids and decode), for untrained models."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size, self.eos_id, self.mask_id = vocab_size, 0, 1

    def encode(self, text: str) -> list[int]:
        return []

    def decode(self, ids) -> str:
        return ""


def _untrained(model: str, vocab: int, context: int) -> TrainedRun:
    cfg = TrainConfig(model=model, context=context)
    net = TextTransformer(cfg.model_config(vocab)).eval()
    return TrainedRun(None, cfg, _Tok(vocab), net, 0, "untrained")


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _no_cache_ar(run: TrainedRun, batch: int, length: int) -> None:
    x = torch.zeros(batch, 1, dtype=torch.long)
    with torch.no_grad():
        for _ in range(length):
            logits = run.net(x[:, -run.net.config.context :])[:, -1]
            x = torch.cat((x, torch.multinomial(torch.softmax(logits.double(), -1), 1)), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flow-run", default=None)
    parser.add_argument("--ar-run", default=None)
    args = parser.parse_args()
    flow = load_run(args.flow_run) if args.flow_run else _untrained("flow", args.vocab, args.length)
    ar = load_run(args.ar_run) if args.ar_run else _untrained("ar", args.vocab, args.length)
    n_tokens = args.batch * args.length
    rows = []
    t_ar = _time(lambda: sample_run(ar, args.batch, length=args.length), args.repeats)
    rows.append(("ar, KV cache", t_ar))
    t_nc = _time(lambda: _no_cache_ar(ar, args.batch, args.length), args.repeats)
    rows.append(("ar, no cache", t_nc))
    for steps in (32, 128, 512):
        t = _time(
            lambda s=steps: sample_run(flow, args.batch, steps=s, length=args.length),
            args.repeats,
        )
        rows.append((f"flow, {steps} steps", t))
    print(
        f"batch {args.batch}, length {args.length}, vocab {args.vocab}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    print("| sampler | seconds | tokens/s | time vs ar (KV cache) |\n|---|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {t:.3f} | {n_tokens / t:.0f} | {t / t_ar:.2f}x |")


if __name__ == "__main__":
    main()
