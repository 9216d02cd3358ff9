"""``fm-text demo``: train the flow model and the autoregressive baseline, compare them.

The corpus is ``pydoc`` unless ``data`` names another (``pystdlib``, a local file or folder).

Both models get the same data, size and step budget (a number of optimiser steps, never a time
budget, so the demo does the same work on any machine; the ar baseline may stop earlier on its
patience) and the same tokenizer (each run trains the BPE on the same split, deterministically;
evaluation checks the fingerprints). Each is scored at its best validation checkpoint
(``RUN_DIR/best``), because the baseline memorises the small ``pydoc`` corpus.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from fm_text.config import TrainConfig
from fm_text.evaluate import evaluate_run
from fm_text.run import load_run, prepare_data
from fm_text.sample import sample_run
from fm_text.train import train

__all__ = ["DEMO_AR", "DEMO_FLOW", "ratio_by_step", "run_demo"]

#: Settings of the demo, chosen by the measurements in benchmarks/RESULTS.md.
DEMO_STEPS = 6000
DEMO_FLOW: dict = {"data": "pydoc", "model": "flow"}
# Patience 10 (1 000 steps): on pydoc the ar model memorises after its best at step 800 and stops
# at 1 800 with that best; on pystdlib patience 4 stopped it on a noisy plateau at step 4 600
# (validation perplexity 19.9, against 13.4 for the same model trained 20 000 steps).
DEMO_AR: dict = {"data": "pydoc", "model": "ar", "patience": 10}
#: Validation sequences scored at the end (pydoc has 218; a large corpus is capped).
DEMO_EVAL_SEQUENCES = 2048


def _train_or_reuse(run_dir: Path, settings: dict, steps: int) -> None:
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary["step"] >= steps or summary["stopped_early"]:
            print(f"{run_dir}: already trained ({summary['step']} steps), reusing it")
            return
    print(f"training {settings['model']} for {steps} steps into {run_dir}")
    print(json.dumps(train(TrainConfig(**settings, steps=steps), run_dir)))


def ratio_by_step(flow_dir: Path, ar_dir: Path) -> list[dict]:
    """Best validation perplexity of both runs (training-time estimate) at each shared evaluation.

    Returns:
        Rows ``{step, flow_minutes, ar_minutes, flow_best_ppl, ar_best_ppl, ratio}``; minutes are
        wall-clock minutes of each run up to that step (its logged ``elapsed_s``).
    """
    from fm_core.training import read_metrics

    def table(run: Path) -> dict[int, tuple[float, float]]:
        elapsed, out = {}, {}
        for r in read_metrics(run / "metrics.jsonl"):
            if "elapsed_s" in r:
                elapsed[r["step"]] = r["elapsed_s"]
            if "best_val_ppl" in r:
                out[r["step"]] = (r["best_val_ppl"], elapsed.get(r["step"], float("nan")) / 60.0)
        return out

    flow, ar = table(flow_dir), table(ar_dir)
    last_ar = max(ar) if ar else None
    rows = []
    for step in sorted(flow):
        a = ar.get(step) or (ar[last_ar] if last_ar is not None and step > last_ar else None)
        if a is None:
            continue
        f = flow[step]
        rows.append(
            {
                "step": step,
                "flow_minutes": f[1],
                "ar_minutes": a[1],
                "flow_best_ppl": f[0],
                "ar_best_ppl": a[0],
                "ratio": f[0] / a[0],
            }
        )
    return rows


def run_demo(
    out: str | Path = "fm-text-demo",
    *,
    steps: int | None = None,
    data: str = "pydoc",
    progress: bool = True,
) -> dict:
    """Train both models (or reuse finished runs) into ``out/flow`` and ``out/ar``, print a comparison.

    Args:
        out: folder of the two runs.
        steps: optimiser steps of each model (default: ``DEMO_STEPS``).
        data: corpus of both runs (``pydoc``, ``pystdlib``, a local text file or folder).
        progress: show the training progress bars.

    Returns:
        ``{"flow": {...}, "ar": {...}, "ratio": flow ppl_bound / ar perplexity}``.
    """
    steps = DEMO_STEPS if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out: {out} is not a folder")
    if not isinstance(data, str) or not data:
        raise ValueError(f"data: expected pydoc, pystdlib or a path, got {data!r}")
    if data not in ("pydoc", "pystdlib") and not Path(data).exists():
        raise ValueError(f"data: {data} does not exist (expected pydoc, pystdlib or a path)")
    if "OMP_NUM_THREADS" not in os.environ:
        # One thread: the same model on any machine whatever its core count (reduction order), and
        # robust to load. Measured on 2 cores, 400 steps: idle, two threads ran 23.9 steps/s and
        # one 16.1 (1.48x); under load (average 4) two threads ran 3.8 and one 15.0. Set
        # OMP_NUM_THREADS to use more threads on a machine of your own.
        torch.set_num_threads(1)
    extra = {"data": data, "progress": progress}
    _train_or_reuse(out / "ar", {**DEMO_AR, **extra}, steps)
    _train_or_reuse(out / "flow", {**DEMO_FLOW, **extra}, steps)
    cap = DEMO_EVAL_SEQUENCES
    ar = evaluate_run(load_run(out / "ar"), max_sequences=cap)
    flow = evaluate_run(load_run(out / "flow"), judge=out / "ar", max_sequences=cap)
    ratio = flow["ppl_bound"] / ar["ppl_bound"]
    _print_comparison(flow, ar, ratio, data, out)
    _print_infills(out / "flow")
    return {"flow": flow, "ar": ar, "ratio": ratio}


def _print_comparison(flow: dict, ar: dict, ratio: float, data: str, out: Path) -> None:
    """The side-by-side table of the two evaluations and the best perplexity by step."""
    rows = [
        ("best step", "step", "{:d}"),
        ("ppl (flow: ELBO bound)", "ppl_bound", "{:.1f}"),
        ("bits per byte", "bits_per_byte", "{:.3f}"),
        ("sample entropy (bits)", "sample_entropy", "{:.3f}"),
        ("val entropy (bits)", "val_entropy", "{:.3f}"),
        ("eval seconds", "seconds", "{:.1f}"),
    ]
    print(f"\n{'':26}{'flow':>12}{'ar':>12}")
    for label, key, fmt in rows:
        print(f"{label:26}{fmt.format(flow[key]):>12}{fmt.format(ar[key]):>12}")
    print(f"{'gen ppl (judge: ar)':26}{flow['gen_ppl']:>12.1f}{'-':>12}")
    print(
        f"\nflow ppl bound / ar ppl = {ratio:.2f} (each at its best validation checkpoint, "
        f"{flow['tokens']} validation tokens of {data})"
    )
    print("\nBest validation perplexity so far (training-time estimate), by step:")
    print(f"{'step':>6}{'flow min':>10}{'ar min':>8}{'flow':>9}{'ar':>9}{'ratio':>7}")
    for r in ratio_by_step(out / "flow", out / "ar"):
        print(
            f"{r['step']:>6}{r['flow_minutes']:>10.1f}{r['ar_minutes']:>8.1f}"
            f"{r['flow_best_ppl']:>9.1f}{r['ar_best_ppl']:>9.1f}{r['ratio']:>7.2f}"
        )


def _print_infills(flow_dir: Path) -> None:
    """Three validation sequences with their middle half filled in by the flow model."""
    run = load_run(flow_dir)
    data = prepare_data(run.config, flow_dir, None, write=False)
    tok = run.tokenizer
    length = run.config.context
    keep = length // 4
    print(
        f"\nInfilling (flow): the first and last {keep} tokens of validation sequences kept, "
        f"{length - 2 * keep} filled in"
    )
    for i, chunk in enumerate(data.val.chunks(length, 0, 3)):
        prompt, suffix = tok.decode(chunk[:keep].tolist()), tok.decode(chunk[-keep:].tolist())
        sample = sample_run(run, 1, length=length, prompt=prompt, suffix=suffix, seed=i)
        print(f"--- sample {i}\n{sample.texts[0]}\n")
