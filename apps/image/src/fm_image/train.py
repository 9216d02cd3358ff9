"""The training recipe: one readable loop on fm-core (and fm-discrete for ``--flow discrete``).

Shared machinery (run directory and resume rules, EMA, atomic checkpoints, DDP setup, metrics,
progress bar, per-step seeding) comes from ``fm_core.training``; this file holds only the recipe.
Randomness is a function of ``(seed, micro-step, rank)`` (``fm_core.training.seed_step``): the data
order (``StepBatchSampler``), the noise, times and label drops (drawn for the global batch, see
``fm_image.flows``) and dropout (per rank). A resumed run therefore needs only the step to continue
exactly, and the global batch of a step is the same on any number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fm_core.training import (
    EMA,
    Checkpointer,
    MetricsLogger,
    init_distributed,
    plot_metrics,
    progress_bar,
    seed_everything,
    seed_step,
    warmup_cosine_schedule,
)
from fm_image.config import TrainConfig, resolve_device, run_directory
from fm_image.data import ImageSplits, StepBatchSampler, load_splits, make_loader
from fm_image.flows import StepSlice, make_flow
from fm_image.grid import save_grid
from fm_image.models import build_model

__all__ = ["build_from_config", "check_run_dir", "train", "write_class_grid"]


def check_run_dir(cfg: TrainConfig) -> int | None:
    """Validate ``cfg.out`` against the request before any work; return the step to resume from.

    Raises:
        RunError: ``out`` is a file, a non-empty folder that is not an fm-image run, or a run
            whose configuration differs in an option a resume may not change (see
            ``RESUME_FREE``).
    """
    return run_directory(cfg.out).check_resume(cfg.options())


def build_from_config(cfg: TrainConfig, splits_info: dict[str, Any]) -> tuple[nn.Module, Any]:
    """The network and the flow of a run, from its config and data description."""
    shape = tuple(splits_info["shape"])
    num_classes = splits_info["num_classes"] if cfg.conditional else 0
    flow = make_flow(cfg, shape, num_classes, splits_info["levels"])
    model = build_model(
        cfg.model, channels=shape[0], image_size=shape[1:], num_classes=num_classes,
        vocab=flow.vocab,
    )  # fmt: skip
    return model, flow


def data_info(splits: ImageSplits) -> dict[str, Any]:
    return {
        "name": splits.name,
        "shape": list(splits.shape),
        "levels": splits.levels,
        "num_classes": splits.num_classes,
        "class_names": splits.class_names,
        "num_train": len(splits.train),
        "num_heldout": len(splits.heldout),
    }


def write_class_grid(
    model: nn.Module, flow, path: Path, *, nfe: int, method: str, cfg_scale: float,
    seed: int, device: torch.device, per_class: int = 10,
) -> Path:  # fmt: skip
    """``samples.png``: one row per class (or an 8x8 grid for an unconditional model)."""
    if flow.num_classes:
        labels = torch.arange(flow.num_classes).repeat_interleave(per_class)
        nrow = per_class
    else:
        labels, nrow = torch.full((64,), -1), 8
    g = torch.Generator(device).manual_seed(seed)
    images, _ = flow.sample(
        model, labels.to(device), nfe=nfe, method=method, cfg_scale=cfg_scale, generator=g
    )
    return save_grid(images, path, nrow)


def _resolve_device(cfg: TrainConfig, ctx) -> torch.device:
    if cfg.device == "auto":
        return ctx.device
    device = resolve_device(cfg.device)  # a clear error when CUDA is missing
    return device if ctx.world_size == 1 or device.type == "cpu" else ctx.device  # one GPU per rank


def train(cfg: TrainConfig, *, splits: ImageSplits | None = None) -> dict[str, Any]:
    """Train (or resume) the run ``cfg.out``; returns a summary (steps done, seconds, images/s).

    Every check (options, run directory, data folder) happens before anything is written.
    """
    cfg.validate()
    resume_step = check_run_dir(cfg)
    if splits is None:
        splits = load_splits(
            cfg.data, cfg.data_dir, discrete=cfg.flow == "discrete", image_size=cfg.image_size
        )
    info = data_info(splits)
    run = Path(cfg.out)
    ckpt = Checkpointer(run, keep=cfg.keep)
    finished = run_directory(run).finished_message(resume_step, cfg.steps)
    if finished:  # a run at its budget is a no-op (one line; a larger --steps continues)
        print(finished, file=sys.stderr)
        return {"run_dir": str(run), "step": resume_step, "trained_steps": 0, "seconds": 0.0}
    with init_distributed() as ctx:
        return _train(cfg, ctx, splits, info, ckpt, resume_step)


def _train(cfg, ctx, splits, info, ckpt, resume_step) -> dict[str, Any]:
    run = Path(cfg.out)
    device = _resolve_device(cfg, ctx)
    if cfg.batch_size % (cfg.grad_accum * ctx.world_size):
        raise ValueError(
            f"--batch-size {cfg.batch_size} must be divisible by --grad-accum x processes = "
            f"{cfg.grad_accum} x {ctx.world_size}"
        )
    seed_everything(cfg.seed)
    model, flow = build_from_config(cfg, info)
    model.to(device)
    ema = EMA(model, decay=cfg.ema_decay)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
    )
    sched = warmup_cosine_schedule(
        opt,
        warmup_steps=cfg.warmup_steps,
        total_steps=cfg.decay_steps or cfg.warmup_steps,
        min_lr_ratio=cfg.min_lr_ratio if cfg.decay_steps else 1.0,  # 1.0: constant after warmup
    )
    start = 0
    if resume_step is not None:
        start = ckpt.load(model=model, ema=ema, optimizer=opt, scheduler=sched).step
        if ctx.is_main:
            run_directory(run).record_resume(cfg.options())
    elif ctx.is_main:
        run_directory(run).write_config({**cfg.options(), "extra": cfg.extra, "data_info": info})
    ctx.barrier()

    net = ctx.wrap(model)
    if cfg.compile:
        # The network alone is compiled (the loss's argument checks stay eager); DDP's hooks
        # need graph breaks, so fullgraph only in one process.
        net = torch.compile(net, fullgraph=not ctx.is_distributed)
    accum, world = cfg.grad_accum, ctx.world_size
    micro_global = cfg.batch_size // accum  # global samples per micro-step
    per_rank = micro_global // world
    sampler = StepBatchSampler(
        len(splits.train), micro_global, seed=cfg.seed, start_step=start * accum,
        total_steps=cfg.steps * accum, rank=ctx.rank, world_size=world,
    )  # fmt: skip
    batches = iter(make_loader(splits.train, sampler, num_workers=cfg.workers,
                               pin_memory=device.type == "cuda"))  # fmt: skip
    part = StepSlice(micro_global, ctx.rank * per_rank, (ctx.rank + 1) * per_rank)
    use_bf16 = cfg.bf16 and device.type == "cuda"
    # resume_step=start drops lines a killed run logged after its last checkpoint (all of them
    # when it died before the first one).
    log = MetricsLogger(run, enabled=ctx.is_main, resume_step=start, tensorboard=cfg.tensorboard)
    bar = progress_bar(cfg.steps, initial=start, enabled=ctx.is_main and cfg.progress, desc="train")
    loss_sum = torch.zeros((), device=device)
    t_log = t0 = time.perf_counter()
    n_log = 0
    g = torch.Generator(device)  # reseeded per micro-step: draws are functions of (seed, step)
    net.train()
    for step in range(start, cfg.steps):
        for a in range(accum):
            micro = step * accum + a
            x_1, labels = next(batches)
            x_1, labels = x_1.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            seed_step(cfg.seed, micro, rank=ctx.rank, generator=g)  # g: the global batch's draws
            sync = contextlib.nullcontext()
            if world > 1 and a < accum - 1:
                sync = net.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    loss = flow.loss(net, x_1, labels, part, g) / accum
                loss.backward()
            loss_sum += loss.detach()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model)
        n_log += 1
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            mean = ctx.all_reduce_mean(loss_sum / n_log).item()  # the only host sync
            now = time.perf_counter()
            ips = cfg.batch_size * n_log / (now - t_log)
            lr = sched.get_last_lr()[0]
            log.log(done, loss=mean, lr=lr, images_per_s=ips)
            bar.set_postfix(loss=f"{mean:.4f}", img_s=f"{ips:.0f}")
            loss_sum.zero_()
            t_log, n_log = now, 0
        if ctx.is_main and (done % cfg.ckpt_every == 0 or done == cfg.steps):
            ckpt.save(done, model=model, ema=ema, optimizer=opt, scheduler=sched,
                      extra={"world_size": world})  # fmt: skip
    seconds = time.perf_counter() - t0
    bar.close()
    log.close()
    if ctx.is_main:
        plot_metrics(run / "metrics.jsonl", run / "loss.png", keys=("loss",),
                     title=f"fm-image {cfg.data} ({cfg.flow}, {cfg.model})")  # fmt: skip
        write_class_grid(
            ema.module.eval(), flow, run / "samples.png", nfe=cfg.sample_nfe,
            method=cfg.sample_method if cfg.flow == "continuous" else "euler",
            cfg_scale=cfg.sample_cfg_scale, seed=cfg.seed, device=device,
        )  # fmt: skip
    trained = cfg.steps - start
    return {
        "run_dir": str(run),
        "step": cfg.steps,
        "trained_steps": trained,
        "seconds": seconds,
        "steps_per_s": trained / seconds if seconds > 0 else math.nan,
        "world_size": world,
        "rank": ctx.rank,
        "config": dataclasses.asdict(cfg),
    }
