"""fm-image: the app's training step vs a bare PyTorch loop, and sampling cost with and without CFG.

Training: the app (``fm_image.train.train``, resumed ``--repeats`` times for ``--steps`` steps
each; its per-interval images/s from metrics.jsonl, which excludes checkpoint writes) against a
bare loop on the same UNet preset, batch, AdamW and EMA (forward, FM loss, backward, AdamW step,
EMA update; noise and times from the global RNG). The two alternate repeat by repeat, so other
jobs on the machine hit both alike; the table reports medians and the ratio app / bare (goal
<= 1.05 on CPU). The app's step also does what the bare loop leaves out: per-step seeding of
the data order and noise (exact resume), label dropout, gradient clipping, the LR scheduler.

Sampling: seconds per sample of ``flow.sample`` (midpoint) at NFE 10/20/50, CFG off and on
(``CFGScaledModel``: one batched model call of 2B per evaluation).

Model choice for the digits demo (``--models``): seconds per bare training step at batch 256 of
each preset, interleaved.

Run:  python benchmarks/image_train.py [--preset unet-small] [--batch 64] [--steps 20]
      [--repeats 5] [--threads 2] [--models]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fm_core import AffineProbPath, CondOTScheduler, FlowMatchingLoss
from fm_core.training import EMA
from fm_image.config import TrainConfig
from fm_image.data import load_splits
from fm_image.models import build_model
from fm_image.run import load_run
from fm_image.train import train


def bare_steps(model, ema, opt, loss_fn, path, data, labels, batch, steps) -> float:
    """Seconds per step of a plain loop: sample batch, path, forward, loss, backward, AdamW, EMA."""
    n = data.shape[0]
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,))
        x_1, y = data[idx], labels[idx]
        x_0 = torch.randn_like(x_1)
        t = torch.rand(batch)
        x_t = path.sample(x_0, x_1, t).x_t
        loss = loss_fn(model(x_t, t, y), x_0, x_1, t)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model)
    return (time.perf_counter() - t0) / steps


def app_interval(cfg: TrainConfig, steps_after: int) -> float:
    """Resume the app run to ``steps_after`` steps; seconds per step of that interval."""
    cfg.steps = steps_after
    cfg.log_every = steps_after  # one metrics line per call, for exactly this interval
    train(cfg)
    last = json.loads((Path(cfg.out) / "metrics.jsonl").read_text().splitlines()[-1])
    return cfg.batch_size / last["images_per_s"]


def compare_models(args) -> None:
    """Seconds per step at batch 256 of each digits-sized preset, interleaved repeat by repeat."""
    splits = load_splits("digits")
    data, labels = splits.train.__getitems__(list(range(len(splits.train))))
    path = AffineProbPath(CondOTScheduler())
    loss_fn = FlowMatchingLoss(path)
    setups = {}
    for preset in ("tiny", "unet-tiny", "unet-small"):
        torch.manual_seed(0)
        model = build_model(preset, channels=1, image_size=(8, 8), num_classes=10)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        setups[preset] = (model, EMA(model), opt, sum(p.numel() for p in model.parameters()))
        bare_steps(model, setups[preset][1], opt, loss_fn, path, data, labels, 256, 2)
    times = {k: [] for k in setups}
    for _ in range(args.repeats):
        for preset, (model, ema, opt, _) in setups.items():
            times[preset].append(
                bare_steps(model, ema, opt, loss_fn, path, data, labels, 256, args.steps)
            )
    print(
        f"# digits presets, batch 256, {args.threads} threads, median of {args.repeats} x {args.steps} steps"
    )
    print("| preset | parameters | s/step | steps/s |\n|---|---|---|---|")
    for preset, (_, _, _, n) in setups.items():
        m = statistics.median(times[preset])
        print(f"| {preset} | {n / 1e6:.2f} M | {m:.4f} | {1 / m:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--preset", default="unet-small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="steps per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=100, help="samples per sampling measurement")
    ap.add_argument("--models", action="store_true", help="only compare the presets on digits")
    ap.add_argument(
        "--sampling-only", action="store_true", help="skip the training-step comparison"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.models:
        compare_models(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="fm-image-bench-"))
    cfg = TrainConfig(
        out=str(tmp / "run"), model=args.preset, batch_size=args.batch, warmup_steps=0,
        progress=False, ckpt_every=10**9, sample_nfe=2, steps=2,
    )  # fmt: skip
    train(cfg)  # builds the run (config, first checkpoint); not timed

    if args.sampling_only:
        sampling(cfg, args)
        return
    splits = load_splits("digits")
    data, labels = splits.train.__getitems__(list(range(len(splits.train))))
    torch.manual_seed(0)
    model = build_model(args.preset, channels=1, image_size=(8, 8), num_classes=10)
    ema = EMA(model, decay=0.999)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    path = AffineProbPath(CondOTScheduler())
    loss_fn = FlowMatchingLoss(path)
    bare_steps(model, ema, opt, loss_fn, path, data, labels, args.batch, 2)  # warm-up

    app_t, bare_t = [], []
    done = cfg.steps
    for _ in range(args.repeats):
        done += args.steps
        app_t.append(app_interval(cfg, done))
        bare_t.append(
            bare_steps(model, ema, opt, loss_fn, path, data, labels, args.batch, args.steps)
        )
    app_m, bare_m = statistics.median(app_t), statistics.median(bare_t)

    print(f"# fm-image training step, {args.preset} on digits 8x8, batch {args.batch}, "
          f"{args.threads} threads, {platform.processor() or platform.machine()}")  # fmt: skip
    print("| loop | median s/step | per-repeat s/step |\n|---|---|---|")
    print(f"| app (`fm_image.train`) | {app_m:.4f} | {', '.join(f'{v:.4f}' for v in app_t)} |")
    print(f"| bare PyTorch | {bare_m:.4f} | {', '.join(f'{v:.4f}' for v in bare_t)} |")
    print(f"\nratio app / bare: **{app_m / bare_m:.3f}** (goal <= 1.05)\n")
    sampling(cfg, args)


def sampling(cfg: TrainConfig, args: argparse.Namespace) -> None:
    """Seconds per sample at NFE 10/20/50, guidance off and on, repeats alternating off/on."""
    run = load_run(cfg.out, device="cpu")
    print(
        f"# sampling, {args.preset}, {args.samples} samples, midpoint, seconds per sample "
        f"(median of {args.repeats}, off/on alternating), {args.threads} threads"
    )
    print("| NFE | CFG off | CFG on (w = 1) | on / off |\n|---|---|---|---|")
    lab = torch.arange(args.samples) % 10
    for nfe in (10, 20, 50):
        times: dict[float, list[float]] = {0.0: [], 1.0: []}
        run.flow.sample(run.model, lab, nfe=nfe, cfg_scale=1.0)  # warm-up
        for r in range(args.repeats):
            for w in (0.0, 1.0):
                g = torch.Generator().manual_seed(r)
                t0 = time.perf_counter()
                run.flow.sample(run.model, lab, nfe=nfe, cfg_scale=w, generator=g)
                times[w].append((time.perf_counter() - t0) / args.samples)
        off, on = statistics.median(times[0.0]), statistics.median(times[1.0])
        print(f"| {nfe} | {off:.2e} | {on:.2e} | {on / off:.2f} |")


if __name__ == "__main__":
    main()
