"""Time per training step: flow-map (MeanFlow) objective vs plain flow matching, same network.

The digits demo's network (``tiny`` MLP, batch 256) built as a velocity model and as a flow-map
model; each step is loss + backward + AdamW. The three steps alternate in repeats so that a
loaded machine slows them alike; CPU time per step and the ratios are printed.

    OMP_NUM_THREADS=1 python benchmarks/flow_map_step.py [--repeats 4 --steps 20]
"""

from __future__ import annotations

import argparse
import time

import torch

from fm_core import CondOTProbPath, FlowMatchingLoss, MeanFlowLoss, TimePairSampler
from fm_image.models import build_model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
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

    steps = {"fm": flow_matching, "meanflow": flow_map(unguided), "meanflow+cfg": flow_map(guided)}
    spent = dict.fromkeys(steps, 0.0)
    for fn in steps.values():  # warm-up
        for _ in range(3):
            fn()
    for _ in range(a.repeats):
        for name, fn in steps.items():
            t0 = time.process_time()
            for _ in range(a.steps):
                fn()
            spent[name] += time.process_time() - t0
    n = a.repeats * a.steps
    for name, s in spent.items():
        print(f"{name:14s} {1000 * s / n:7.1f} ms/step (CPU)   ratio to fm {s / spent['fm']:.2f}")


if __name__ == "__main__":
    main()
