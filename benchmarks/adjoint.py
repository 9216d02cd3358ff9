"""Gradients through an ODE solve: peak memory and time of backprop, checkpointing and the adjoint.

Each (mode, steps) runs in a fresh subprocess, which reports its peak resident memory above the
level reached after building the model and its input (``ru_maxrss``: CPU tensors are
plain heap memory), and the median time of forward + backward over repeats. Modes alternate
within each repeat round, so load on the machine affects them alike.

    python benchmarks/adjoint.py                       # 10, 100, 1000 steps; MLP, batch 256, D 64
    python benchmarks/adjoint.py --steps 10 100 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

MODES = ("backprop", "checkpoint", "adjoint")


def _child(mode: str, steps: int, repeats: int, dim: int, batch: int, hidden: int) -> dict:
    import torch
    from torch import nn

    from fm_core import ODESolver

    torch.manual_seed(0)
    torch.set_num_threads(1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Linear(dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                nn.Linear(hidden, dim),
            )  # fmt: skip

        def forward(self, x, t):
            return self.body(torch.cat([x, t.expand(x.shape[0], 1)], -1))

    net = Net()
    solver = ODESolver(net)
    x0 = torch.randn(batch, dim)

    def run() -> float:
        start = time.perf_counter()
        x = x0.clone().requires_grad_(True)
        out = solver.sample(x, 1.0 / steps, method="euler", enable_grad=True, gradient=mode)
        out.square().mean().backward()
        net.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model and input built, no solve
    times = [run() for _ in range(repeats + 1)][1:]  # the first run warms up (not timed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "steps": steps, "seconds": statistics.median(times),
            "peak_mib": (peak - base) / 1024}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--child", nargs=2, metavar=("MODE", "STEPS"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(_child(a.child[0], int(a.child[1]), a.repeats, a.dim, a.batch, a.hidden)))
        return
    rows = []
    for steps in a.steps:
        for mode in MODES:
            cmd = [sys.executable, __file__, "--child", mode, str(steps), "--repeats",
                   str(a.repeats), "--dim", str(a.dim), "--batch", str(a.batch),
                   "--hidden", str(a.hidden)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(
        "| steps | mode | time (s) | time / backprop | peak MiB above the model's (fresh process) |"
    )
    print("|---:|---|---:|---:|---:|")
    for steps in a.steps:
        by = {r["mode"]: r for r in rows if r["steps"] == steps}
        for mode in MODES:
            r = by[mode]
            ratio = r["seconds"] / by["backprop"]["seconds"]
            print(f"| {steps} | {mode} | {r['seconds']:.3f} | {ratio:.2f} | "
                  f"{r['peak_mib']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
