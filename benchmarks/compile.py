"""Compiled training steps: our paths and losses vs the same step on the reference's paths.

A training step = path sample + model + loss + backward + SGD update. The forward part
(``path.sample`` + model + loss) is compiled with ``torch.compile(fullgraph=True)`` (inductor on
CPU; the backward graph is compiled by AOTAutograd); backward and the optimizer step run as
usual. Each case is written twice, differing only in the path and loss:

- continuous: ``fm_core.AffineProbPath`` + ``fm_core.FlowMatchingLoss`` vs
  ``flow_matching.path.AffineProbPath`` + the squared error to ``dx_t`` written by hand (the
  reference has no continuous loss), CondOT, MLP on D = 64, batch 256;
- discrete: ``fm_discrete.MixtureDiscreteProbPath`` + ``MixturePathGeneralizedKL`` vs the
  reference's ``MixtureDiscreteProbPath`` + ``MixturePathGeneralizedKL``, V = 257 (256 + mask),
  L = 64, batch 32, a small embedding-MLP posterior.

Both variants run in one process, interleaved repeat by repeat in alternating order (other jobs
on the machine hit both alike), and the table reports medians and the ratio ours / reference
(< 1: ours faster), in wall time and in the thread's CPU time (``time.thread_time``: with one
thread it leaves out the time the process waited for a core, so it is the steadier figure on a
loaded machine). The eager steps are timed too, for context. Compile time is excluded (one
warm-up step; "first call" shows it, smaller when inductor's cache already holds the graph).

Run:  python benchmarks/compile.py [--repeats 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from flow_matching.loss import MixturePathGeneralizedKL as RefGKL
from flow_matching.path import AffineProbPath as RefAffine
from flow_matching.path import MixtureDiscreteProbPath as RefMixture
from flow_matching.path.scheduler import CondOTScheduler as RefCondOT
from flow_matching.path.scheduler import PolynomialConvexScheduler as RefPoly
from torch import nn

from fm_core import AffineProbPath, CondOTScheduler, FlowMatchingLoss, PolynomialConvexScheduler
from fm_discrete import MixtureDiscreteProbPath, MixturePathGeneralizedKL


class VelocityMLP(nn.Module):
    def __init__(self, dim: int = 64, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + 1, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], dim=-1))


class Posterior(nn.Module):
    def __init__(self, vocab: int, hidden: int = 128):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.net = nn.Sequential(nn.Linear(hidden + 1, hidden), nn.SiLU(), nn.Linear(hidden, vocab))

    def forward(self, x, t):
        h = self.embed(x)
        t = t[:, None, None].expand(*h.shape[:-1], 1)
        return self.net(torch.cat([h, t], dim=-1))


def continuous_steps(batch: int, dim: int):
    ours_path = AffineProbPath(CondOTScheduler())
    ours_loss = FlowMatchingLoss(ours_path)
    ref_path = RefAffine(RefCondOT())

    def ours(model, x_0, x_1, t):
        s = ours_path.sample(x_0, x_1, t)
        return ours_loss(model(s.x_t, s.t), s.x_0, s.x_1, s.t)

    def ref(model, x_0, x_1, t):
        s = ref_path.sample(x_0=x_0, x_1=x_1, t=t)
        return (model(s.x_t, s.t) - s.dx_t).pow(2).mean()

    def data():
        return torch.randn(batch, dim), torch.randn(batch, dim), torch.rand(batch)

    return ours, ref, lambda: VelocityMLP(dim), data


def discrete_steps(batch: int, length: int, vocab: int):
    ours_path = MixtureDiscreteProbPath(PolynomialConvexScheduler(2))
    ours_loss = MixturePathGeneralizedKL(ours_path)
    ref_path = RefMixture(RefPoly(2))
    ref_loss = RefGKL(ref_path)

    def ours(model, x_0, x_1, t):
        s = ours_path.sample(x_0, x_1, t)
        return ours_loss(model(s.x_t, s.t), s.x_1, s.x_t, s.t)

    def ref(model, x_0, x_1, t):
        s = ref_path.sample(x_0=x_0, x_1=x_1, t=t)
        return ref_loss(model(s.x_t, s.t), s.x_1, s.x_t, s.t)

    def data():
        x_1 = torch.randint(0, vocab - 1, (batch, length))
        # the reference's t must stay below 1 (its loss divides by 1 - kappa_t)
        return torch.full_like(x_1, vocab - 1), x_1, torch.rand(batch) * 0.999

    return ours, ref, lambda: Posterior(vocab), data


def make_step(forward, model, compiled: bool):
    fwd = torch.compile(forward, fullgraph=True) if compiled else forward
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step(batch):
        opt.zero_grad(set_to_none=True)
        loss = fwd(model, *batch)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def run_case(name, factory, repeats):
    ours, ref, make_model, data = factory
    torch.manual_seed(0)
    batches = [data() for _ in range(8)]
    variants = {}
    for label, fwd in (("ours", ours), ("reference", ref)):
        for compiled in (True, False):
            torch.manual_seed(0)
            variants[(label, compiled)] = make_step(fwd, make_model(), compiled)
    compile_s = {}
    for key, step in variants.items():
        start = time.perf_counter()
        step(batches[0])  # warm-up (and compilation)
        compile_s[key] = time.perf_counter() - start
    wall = {key: [] for key in variants}
    cpu = {key: [] for key in variants}
    order = list(variants.items())
    for r in range(repeats):
        batch = batches[r % len(batches)]
        # Alternate the order each repeat: a position effect (caches, a burst of load) hits all.
        for key, step in order if r % 2 == 0 else order[::-1]:
            start, start_cpu = time.perf_counter(), time.thread_time()
            step(batch)
            cpu[key].append(time.thread_time() - start_cpu)
            wall[key].append(time.perf_counter() - start)
    w = {key: statistics.median(v) * 1e3 for key, v in wall.items()}
    c = {key: statistics.median(v) * 1e3 for key, v in cpu.items()}
    o, rf, oe, re_ = ("ours", True), ("reference", True), ("ours", False), ("reference", False)
    print(
        f"| {name} | {w[o]:.2f} | {w[rf]:.2f} | **{w[o] / w[rf]:.2f}** | "
        f"{c[o]:.2f} | {c[rf]:.2f} | **{c[o] / c[rf]:.2f}** | "
        f"{w[oe] / w[re_]:.2f} / {c[oe] / c[re_]:.2f} | "
        f"{compile_s[o]:.0f} / {compile_s[rf]:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.threads} threads, load average {os.getloadavg()[0]:.1f}, "
        f"{args.repeats} interleaved repeats\n"
    )
    print(
        "| step | compiled, ours (wall ms) | compiled, ref. (wall ms) | ratio (wall) "
        "| compiled, ours (CPU ms) | compiled, ref. (CPU ms) | ratio (CPU) "
        "| eager ratio (wall / CPU) | first call s (ours / ref) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    run_case("continuous: CondOT, MLP D=64, B=256", continuous_steps(256, 64), args.repeats)
    run_case(
        "discrete: mixture + gen. KL, V=257, L=64, B=32", discrete_steps(32, 64, 257), args.repeats
    )
    print(f"\nload average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
