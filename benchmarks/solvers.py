"""ODE solvers: fm_core.solver.ODESolver vs the reference flow_matching.solver.ODESolver.

Both run in one process on the same model and inputs; times are the median of --repeats calls
(other jobs may share the CPU, so medians, not means). Tables:

1. Exact likelihood (compute_likelihood, exact_divergence=True), MLP on D = 64 (and 256),
   batch 512, 20 Euler steps: wall time, ratio, max relative difference of log p1.
2. Sampling, 2-D MLP, batch 4096, midpoint with 100 steps (200 evaluations): ours vs the model's
   own 200 evaluations in a bare loop, and vs the reference.
3. Hutchinson: std over 16 seeds of the per-sample log p1 estimate for K = 1, 4, 16, 64 probes,
   next to the exact value (D = 64, 20 Euler steps, 64 samples).
4. Memory of gradients through sample (enable_grad=True): peak RSS of a child process for 10, 40
   and 160 Euler steps, with and without per-step checkpointing.
5. Training through the likelihood (the CNF notebook's step: compute_likelihood(...,
   exact_divergence=True, enable_grad=True), then (-log_p.mean()).backward()), midpoint with 20
   steps and dopri5: median time per step, model calls, and peak RSS growth of a child process,
   for ours without checkpointing (the default), ours with checkpoint_steps=True, and the
   reference. flow_matching 1.0.10 cannot train here (its dynamics return detached tensors), so
   "reference" is its compute_likelihood with that one line changed at run time to keep the graph
   under enable_grad=True (``reference_with_graph``: the change the reference's CNF notebook
   relies on; nothing of it is stored in this repository).

Run:  python benchmarks/solvers.py [--repeats 5] [--threads 2] [--skip-d256]
      python benchmarks/solvers.py --only likelihood-training
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import resource
import statistics
import subprocess
import sys
import time

import torch
from flow_matching.solver import ODESolver as RefODESolver

from fm_core.solver import ODESolver


class MLP(torch.nn.Module):
    """Velocity MLP on [B, D] with time as an extra input; t may be 0-dim."""

    def __init__(self, dim: int, hidden: int = 256, layers: int = 3):
        super().__init__()
        mods, d = [], dim + 1
        for _ in range(layers - 1):
            mods += [torch.nn.Linear(d, hidden), torch.nn.SiLU()]
            d = hidden
        mods.append(torch.nn.Linear(d, dim))
        self.net = torch.nn.Sequential(*mods)

    def forward(self, x, t):
        t = t.reshape(-1, 1).expand(x.shape[0], 1).to(x.dtype)
        return self.net(torch.cat([x, t], dim=1))


def log_p0(x):
    return -0.5 * (x**2).flatten(1).sum(-1) - 0.5 * x[0].numel() * math.log(2 * math.pi)


def interleaved_medians(fns, repeats):
    """Median time of each of ``fns``, run in turn each repeat (so CPU contention hits all)."""
    times, outs = [[] for _ in fns], [None] * len(fns)
    for fn in fns:
        fn()  # warm-up
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            outs[i] = fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], outs


def median_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def likelihood_table(dims, repeats):
    print("\n## Exact likelihood: batch 512, 20 Euler steps (step_size=0.05)\n")
    print("| D | reference (s) | ours (s) | speed-up | max rel. diff of log p1 | NFE ours |")
    print("|---|---|---|---|---|---|")
    for dim in dims:
        torch.manual_seed(0)
        model = MLP(dim).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        x_1 = torch.randn(512, dim)
        ref, ours = RefODESolver(model), ODESolver(model)
        kw = {"step_size": 0.05, "method": "euler", "exact_divergence": True}
        ref_reps = max(1, min(repeats, 3)) if dim > 64 else repeats
        grid = torch.tensor([1.0, 0.0])
        t_ref, (_, lp_ref) = median_time(
            lambda s=ref, x=x_1, g=grid, kw=kw: s.compute_likelihood(x, log_p0, time_grid=g, **kw),
            ref_reps,
        )
        t_ours, (_, lp) = median_time(
            lambda s=ours, x=x_1, kw=kw: s.compute_likelihood(x, log_p0, **kw), repeats
        )
        rel = ((lp - lp_ref).abs() / lp_ref.abs()).max().item()
        print(
            f"| {dim} | {t_ref:.3f} (median of {ref_reps}) | {t_ours:.3f} | {t_ref / t_ours:.1f}x "
            f"| {rel:.1e} | {ours.last_nfe} |"
        )


def sampling_table(repeats):
    print("\n## Sampling: 2-D MLP (3-64-64-2, SiLU), batch 4096, midpoint, 100 steps\n")
    torch.manual_seed(0)
    model = MLP(2, hidden=64).eval()
    x_0 = torch.randn(4096, 2)
    grid = torch.linspace(0, 1, 101)
    ts = list(grid[:-1].unbind())

    def bare():  # the model's own 200 evaluations, nothing else
        x = x_0
        for t in ts:
            model(x=x, t=t)
            x = model(x=x, t=t)
        return x

    t_mid = list((grid[:-1] + 0.005).unbind())

    def by_hand():  # midpoint written inline: the model calls plus the minimal arithmetic
        x = x_0
        for t, tm in zip(ts, t_mid, strict=True):
            x = x + 0.01 * model(x=x + 0.005 * model(x=x, t=t), t=tm)
        return x

    ours, ref = ODESolver(model), RefODESolver(model)
    with torch.no_grad():
        (t_bare, t_hand, t_ours, t_ref), (_, _, out, out_ref) = interleaved_medians(
            [
                bare,
                by_hand,
                lambda: ours.sample(x_0, 0.01, method="midpoint"),
                lambda: ref.sample(
                    x_0, 0.01, method="midpoint", time_grid=torch.tensor([0.0, 1.0])
                ),
            ],
            repeats,
        )
    diff = (out - out_ref).abs().max().item()
    print(f"median of {repeats} interleaved repeats\n")
    print("| | time (s) | vs 200 bare model calls | ours vs reference |")
    print("|---|---|---|---|")
    print(f"| 200 bare model evaluations | {t_bare:.4f} | 1.00x | |")
    print(f"| midpoint written by hand | {t_hand:.4f} | {t_hand / t_bare:.2f}x | |")
    print(f"| ours (NFE {ours.last_nfe}) | {t_ours:.4f} | {t_ours / t_bare:.2f}x | "
          f"{t_ref / t_ours:.2f}x faster |")  # fmt: skip
    print(f"| reference | {t_ref:.4f} | {t_ref / t_bare:.2f}x | |")
    print(f"\nmax |ours - reference| on the samples: {diff:.1e}")


def hutchinson_table():
    print(
        "\n## Hutchinson: per-sample std of log p1 over 16 seeds (D = 64, 64 samples, 20 Euler)\n"
    )
    torch.manual_seed(0)
    model = MLP(64).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x_1 = torch.randn(64, 64)
    solver = ODESolver(model)
    kw = {"step_size": 0.05, "method": "euler"}
    _, exact = solver.compute_likelihood(x_1, log_p0, exact_divergence=True, **kw)
    print(f"exact log p1: mean over samples {exact.mean():.3f}\n")
    print("| probe | K | mean std of estimate (nats) | mean |bias| (nats) | time per call (s) |")
    print("|---|---|---|---|---|")
    for probe in ("rademacher", "gaussian"):
        for k in (1, 4, 16, 64):
            runs, start = [], time.perf_counter()
            for seed in range(16):
                gen = torch.Generator().manual_seed(seed)
                _, lp = solver.compute_likelihood(x_1, log_p0, divergence="hutchinson",
                                                  num_probes=k, probe=probe, generator=gen, **kw)  # fmt: skip
                runs.append(lp)
            per_call = (time.perf_counter() - start) / 16
            runs = torch.stack(runs)
            std = runs.std(0).mean().item()
            bias = (runs.mean(0) - exact).abs().mean().item()
            print(f"| {probe} | {k} | {std:.3f} | {bias:.3f} | {per_call:.3f} |")


def memory_child(steps: int, ckpt: bool) -> None:
    torch.manual_seed(0)
    model = MLP(64, hidden=512, layers=4)
    x_0 = torch.randn(512, 64)
    solver = ODESolver(model)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = solver.sample(x_0, 1.0 / steps, method="euler", enable_grad=True, checkpoint_steps=ckpt)
    out.pow(2).mean().backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"extra_mib": (peak - base) / 1024}))


def memory_table():
    print("\n## Gradients through sample: peak RSS growth of a child process\n")
    print("MLP 65-512-512-512-64, batch 512, Euler; loss = mean(x_1^2), then backward().\n")
    print("| steps | no checkpointing (MiB) | checkpoint per step (MiB) |")
    print("|---|---|---|")
    for steps in (10, 40, 160):
        row = []
        for ckpt in (False, True):
            res = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(steps), str(int(ckpt))],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            row.append(json.loads(res.stdout.strip().splitlines()[-1])["extra_mib"])
        print(f"| {steps} | {row[0]:.0f} | {row[1]:.0f} |")


def reference_with_graph():
    """flow_matching 1.0.10's ODESolver with ``compute_likelihood`` keeping the graph when asked.

    Its dynamics end in ``return ut.detach(), div.detach()``, which makes ``enable_grad=True``
    useless; the source of the installed method is patched in memory to detach only when
    ``enable_grad`` is false, and compiled against the module's own globals.
    """
    import inspect
    import textwrap

    from flow_matching.solver import ode_solver

    src = textwrap.dedent(inspect.getsource(ode_solver.ODESolver.compute_likelihood))
    old = "return ut.detach(), div.detach()"
    if src.count(old) != 1:
        raise RuntimeError("the installed flow_matching is not the 1.0.10 this patch expects")
    src = src.replace(old, "return (ut, div) if enable_grad else (ut.detach(), div.detach())")
    namespace: dict = {}
    exec(compile(src, ode_solver.__file__, "exec"), dict(vars(ode_solver)), namespace)
    return type(
        "ReferenceWithGraph",
        (RefODESolver,),
        {"compute_likelihood": namespace["compute_likelihood"]},
    )


class CountingCNF(torch.nn.Module):
    """The CNF notebook's velocity (three ELU layers) on [B, 2]; counts its forward calls."""

    def __init__(self, hidden: int):
        super().__init__()
        h = hidden
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, h), torch.nn.ELU(), torch.nn.Linear(h, h), torch.nn.ELU(),
            torch.nn.Linear(h, h), torch.nn.ELU(), torch.nn.Linear(h, 2),
        )  # fmt: skip
        self.calls = 0
        self.last_forward_calls = 0

    def forward(self, x, t):
        self.calls += 1
        t = t.reshape(-1, 1).expand(x.shape[0], 1).to(x.dtype)
        return self.net(torch.cat([t, x], dim=1))


LT_CONFIGS = {
    "midpoint, 20 steps": ("midpoint", 0.05),
    "dopri5 (atol = rtol = 1e-5)": ("dopri5", None),
}
LT_VARIANTS = ("ours", "ours + checkpoint_steps=True", "reference (graph kept)")


def likelihood_training_step(variant: str, method: str, step_size, model, x_1):
    """One maximum-likelihood step's forward and backward; returns the loss."""
    kw = {"step_size": step_size, "method": method, "exact_divergence": True, "enable_grad": True}
    if variant == "reference (graph kept)":
        solver = reference_with_graph()(model)
        _, log_p = solver.compute_likelihood(x_1, log_p0, time_grid=torch.tensor([1.0, 0.0]), **kw)
    else:
        solver = ODESolver(model)
        ckpt = variant == "ours + checkpoint_steps=True"
        _, log_p = solver.compute_likelihood(x_1, log_p0, checkpoint_steps=ckpt, **kw)
    model.last_forward_calls = model.calls  # before backward's recomputations
    loss = -log_p.mean()
    loss.backward()
    return loss.detach()


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field))


def likelihood_training_child(variant: str, config: str, batch: int, hidden: int) -> None:
    """Peak RSS growth of one step (Linux: the peak is reset after the imports, before the step).

    No warm-up step: memory it freed would stay in the process and hide the step's own peak.
    """
    torch.manual_seed(0)
    model = CountingCNF(hidden)
    x_1 = torch.randn(batch, 2)
    if variant.startswith("reference"):
        reference_with_graph()  # its imports before the measurement
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
        f.write("5")
    base = _status_kib("VmRSS:")
    likelihood_training_step(variant, *LT_CONFIGS[config], model, x_1)
    print(json.dumps({"extra_mib": (_status_kib("VmHWM:") - base) / 1024}))


def likelihood_training_table(repeats: int, batch: int = 1024, hidden: int = 64):
    print("\n## Training through the likelihood (CNF notebook step)\n")
    print(f"Velocity 3-{hidden}-{hidden}-{hidden}-2 (ELU), batch {batch}, D = 2, exact divergence; "
          "one step = compute_likelihood(enable_grad=True) + backward. Times: median of "
          f"{repeats} interleaved repeats in one process; memory: peak RSS growth over one step in a "
          "fresh child process (Linux VmHWM, reset after the imports).\n")  # fmt: skip
    print("| solve | variant | time per step (s) | vs ours | model calls: forward / total | "
          "peak RSS growth (MiB) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for config, (method, step) in LT_CONFIGS.items():
        torch.manual_seed(0)
        model = CountingCNF(hidden)
        x_1 = torch.randn(batch, 2)
        losses, calls = {}, {}
        for variant in LT_VARIANTS:
            model.calls = 0
            losses[variant] = likelihood_training_step(variant, method, step, model, x_1)
            calls[variant] = (model.last_forward_calls, model.calls)
        fns = [
            functools.partial(likelihood_training_step, v, method, step, model, x_1)
            for v in LT_VARIANTS
        ]
        times, _ = interleaved_medians(fns, repeats)
        for variant, t in zip(LT_VARIANTS, times, strict=True):
            res = subprocess.run(
                [sys.executable, __file__, "--lt-child", variant, config, str(batch), str(hidden)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            mib = json.loads(res.stdout.strip().splitlines()[-1])["extra_mib"]
            fwd, total = calls[variant]
            print(f"| {config} | {variant} | {t:.3f} | {t / times[0]:.2f}x | {fwd} / {total} "
                  f"| {mib:.0f} |")  # fmt: skip
        spread = max(losses.values()) - min(losses.values())
        print(f"| {config} | (max difference of the three losses: {spread:.1e}) | | | | |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-d256", action="store_true")
    parser.add_argument(
        "--only",
        choices=["likelihood", "sampling", "hutchinson", "memory", "likelihood-training"],
    )
    parser.add_argument("--lt-batch", type=int, default=1024)
    parser.add_argument("--lt-hidden", type=int, default=64)
    parser.add_argument("--memory-child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lt-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child[0], bool(args.memory_child[1]))
        return
    if args.lt_child:
        variant, config, batch, hidden = args.lt_child
        likelihood_training_child(variant, config, int(batch), int(hidden))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.only in (None, "likelihood"):
        likelihood_table([64] if args.skip_d256 else [64, 256], args.repeats)
    if args.only in (None, "sampling"):
        sampling_table(args.repeats)
    if args.only in (None, "hutchinson"):
        hutchinson_table()
    if args.only in (None, "memory"):
        memory_table()
    if args.only in (None, "likelihood-training"):
        likelihood_training_table(args.repeats, args.lt_batch, args.lt_hidden)


if __name__ == "__main__":
    main()
