"""Time per training step: flow-map (MeanFlow) objective vs plain flow matching, same network.

The digits demo's network (``tiny`` MLP, batch 256) built as a velocity model and as a flow-map
model; each step is loss + backward + AdamW. The three steps alternate in repeats so that a
loaded machine slows them alike; CPU time per step and the ratios are printed.

Also timed, for ``--objective reflow``'s budget: the reflow student's step (the flow-map network
regressing stored pairs under the default pseudo-Huber loss, no JVP) and one shard of teacher pairs (``--pairs-batch`` noise draws
integrated by ``ODESolver``, midpoint steps of ``REFLOW_STEP``, guidance 0.3: two network calls in
one per evaluation), both as FM-step equivalents.

    OMP_NUM_THREADS=1 python benchmarks/flow_map_step.py [--repeats 4 --steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from fm_core import (
    CFGScaledModel,
    CondOTProbPath,
    FlowMatchingLoss,
    MeanFlowLoss,
    ODESolver,
    TimePairSampler,
)
from fm_image.flow_map import REFLOW_HUBER_C, REFLOW_STEP, pseudo_huber
from fm_image.models import build_model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--pairs-batch", type=int, default=1000)
    a = p.parse_args()
    torch.manual_seed(0)
    kw = {"channels": 1, "image_size": (8, 8), "num_classes": 10}
    fmap, plain = build_model("tiny", flow_map=True, **kw), build_model("tiny", **kw)
    opt_map, opt_plain = torch.optim.AdamW(fmap.parameters()), torch.optim.AdamW(plain.parameters())
    path = CondOTProbPath()
    fm_loss = FlowMatchingLoss(path)
    guided = MeanFlowLoss(path, guidance_scale=0.3, null_label=10)
    unguided = MeanFlowLoss(path)
    pairs = TimePairSampler(equal_fraction=0.25)
    b = a.batch_size
    x_1, y = torch.randn(b, 1, 8, 8), torch.randint(0, 11, (b,))

    def flow_map(loss_fn):
        def step():
            t, r = pairs(b)
            loss_fn(fmap, torch.randn_like(x_1), x_1, t, r, label=y).backward()
            opt_map.step()
            opt_map.zero_grad()

        return step

    def flow_matching():
        x_0, t = torch.randn_like(x_1), torch.rand(b)
        x_t = path.sample(x_0, x_1, t).x_t
        fm_loss(plain(x_t, t, y), x_0, x_1, t).backward()
        opt_plain.step()
        opt_plain.zero_grad()

    def reflow_student():
        x_0, t, r = torch.randn_like(x_1), torch.zeros(b), torch.ones(b)
        u = fmap(path.sample(x_0, x_1, t).x_t, t, y, r=r)
        pseudo_huber(u - (x_1 - x_0), REFLOW_HUBER_C).mean().backward()
        opt_map.step()
        opt_map.zero_grad()

    teacher = CFGScaledModel(plain, 0.3, null_label=10)
    n_pairs = a.pairs_batch

    @torch.no_grad()
    def pair_shard():
        labels = torch.randint(0, 10, (n_pairs,))
        x_0 = torch.randn(n_pairs, 1, 8, 8)
        ODESolver(teacher).sample(x_0, step_size=REFLOW_STEP, method="midpoint", label=labels)

    steps = {"fm": flow_matching, "meanflow": flow_map(unguided), "meanflow+cfg": flow_map(guided),
             "reflow student": reflow_student}  # fmt: skip
    spent = dict.fromkeys([*steps, "pairs"], 0.0)
    for fn in steps.values():  # warm-up
        for _ in range(3):
            fn()
    for _ in range(a.repeats):
        for name, fn in steps.items():
            t0 = time.process_time()
            for _ in range(a.steps):
                fn()
            spent[name] += time.process_time() - t0
        t0 = time.process_time()
        pair_shard()
        spent["pairs"] += time.process_time() - t0
    n = a.repeats * a.steps
    fm = spent["fm"] / n
    for name in steps:
        s = spent[name]
        print(f"{name:14s} {1000 * s / n:7.1f} ms/step (CPU)   ratio to fm {s / spent['fm']:.2f}")
    per = spent["pairs"] / a.repeats
    print(
        f"{'pairs':14s} {1000 * per:7.1f} ms per {n_pairs} teacher pairs (CPU) = "
        f"{per / fm:.0f} fm steps; 1000 pairs = {per / fm * 1000 / n_pairs:.0f} fm steps"
    )


if __name__ == "__main__":
    main()
