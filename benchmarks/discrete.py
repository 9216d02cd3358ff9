"""Discrete Euler sampler at scale: reference ``flow_matching`` vs ``fm_discrete``, per step time and peak memory.

Batch 4, length 256, vocabulary 50 257; the model returns one fixed precomputed ``[B, L, V]``
tensor, so its cost is left out. Each configuration runs in a fresh subprocess: peak memory is the
peak RSS during sampling (``VmHWM`` after resetting it through ``/proc/self/clear_refs``) minus
the RSS before sampling (which already holds the model's output tensor).

Run: ``python benchmarks/discrete.py [--steps 8]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

B, L, V = 4, 256, 50_257
MASK = V - 1


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def child(config: str, steps: int) -> None:
    import time

    import torch

    torch.manual_seed(0)
    logits_out = config.endswith("logits")
    out = torch.randn(B, L, V)
    if not logits_out:
        out.exp_()
        out /= out.sum(-1, keepdim=True)  # probabilities, in place: one [B, L, V] tensor

    def model(x, t, **extras):
        return out[: x.shape[0], : x.shape[1]]  # a view; the warm-up below uses a slice

    if config.startswith("mask"):
        x_init = torch.full((B, L), MASK)
    else:
        x_init = torch.randint(0, V, (B, L))
    if config.startswith("reference"):
        from flow_matching.path import MixtureDiscreteProbPath
        from flow_matching.path.scheduler import PolynomialConvexScheduler
        from flow_matching.solver import MixtureDiscreteEulerSolver

        solver = MixtureDiscreteEulerSolver(
            model, MixtureDiscreteProbPath(PolynomialConvexScheduler(1.0)), V
        )
    else:
        from fm_core import CondOTScheduler
        from fm_discrete import MixtureDiscreteEulerSolver, MixtureDiscreteProbPath

        mask_token = MASK if "mask" in config else None
        solver = MixtureDiscreteEulerSolver(
            model,
            MixtureDiscreteProbPath(CondOTScheduler()),
            V,
            mask_token=mask_token,
            model_output="logits" if logits_out else "probs",
        )
    run = lambda: solver.sample(x_init, step_size=1.0 / steps)
    # Warm-up on 4 positions pages in the code both solvers touch, so that the RSS delta measures
    # tensors, not libtorch code loaded on first use.
    solver.sample(x_init[:1, :4].clone(), step_size=1.0 / steps)
    base = _status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    t0 = time.perf_counter()
    run()
    elapsed = time.perf_counter() - t0
    peak = _status("VmHWM:") - base
    print(json.dumps({"config": config, "per_step_s": elapsed / steps, "peak_mb": peak / 2**20}))


CONFIGS = {
    "reference": "reference solver, model returns probabilities, uniform x_init",
    "ours-probs": "fm_discrete, model returns probabilities, uniform x_init",
    "ours-logits": "fm_discrete, model returns logits, uniform x_init",
    "reference-mask": "reference solver, probabilities, all-mask x_init",
    "mask-fast-logits": "fm_discrete, logits, all-mask x_init, mask_token fast path",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--child", default=None)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps)
        return
    rows = {}
    for config in args.configs.split(","):
        res = subprocess.run(
            [sys.executable, __file__, "--child", config, "--steps", str(args.steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[config] = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"B={B} L={L} V={V}, {args.steps} steps, per-step time = total / steps")
    print(
        "| config | per step (s) | peak extra RSS (MB) | time vs reference | memory vs reference |"
    )
    print("|---|---|---|---|---|")
    for config, r in rows.items():
        ref = rows.get("reference-mask" if "mask" in config else "reference")
        tr = f"{r['per_step_s'] / ref['per_step_s']:.3f}x" if ref else "-"
        mr = f"{r['peak_mb'] / ref['peak_mb']:.3f}x" if ref else "-"
        print(
            f"| {config}: {CONFIGS[config]} | {r['per_step_s']:.3f} | {r['peak_mb']:.0f} | {tr} | {mr} |"
        )


if __name__ == "__main__":
    main()
