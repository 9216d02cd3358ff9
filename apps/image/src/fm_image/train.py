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
        vocab=flow.vocab, flow_map=getattr(flow, "flow_map", False),
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

    Every check (options, run directory, data folder) happens before anything is written. A run
    already at ``cfg.steps`` (or past it) is left as it is: one line on stderr says so, and the
    summary reports ``trained_steps`` 0.
    """
    cfg.validate()
    resume_step = check_run_dir(cfg)
    if splits is None:
        splits = load_splits(
            cfg.data, cfg.data_dir, discrete=cfg.flow == "discrete", image_size=cfg.image_size
        )
    run = Path(cfg.out)
    finished = run_directory(run).finished_message(resume_step, cfg.steps)
    if finished:  # a run at its budget is a no-op (one line; a larger --steps continues)
        print(finished, file=sys.stderr)
        return {"run_dir": str(run), "step": resume_step, "trained_steps": 0, "seconds": 0.0}
    with init_distributed() as ctx:
        return _Trainer(cfg, ctx, splits, resume_step).run()


def lr_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig):
    """Warmup, then cosine decay to ``min_lr_ratio`` at ``decay_steps`` (``None``: at ``steps``).

    ``decay_steps=None`` (the default) decays over the run's ``--steps``: a resume with a larger
    ``--steps`` stretches the rest of the decay to the new end. ``0`` keeps the rate constant after
    warmup (the default of runs written before the recipe became the default).
    """
    if cfg.decay_steps is None:
        warmup = min(cfg.warmup_steps, cfg.steps)
        return warmup_cosine_schedule(
            opt, warmup_steps=warmup, total_steps=cfg.steps, min_lr_ratio=cfg.min_lr_ratio
        )
    return warmup_cosine_schedule(
        opt,
        warmup_steps=cfg.warmup_steps,
        total_steps=cfg.decay_steps or cfg.warmup_steps,
        min_lr_ratio=cfg.min_lr_ratio if cfg.decay_steps else 1.0,  # 1.0: constant after warmup
    )


class _Trainer:
    """One run's training loop, in named steps: set up, accumulate, step, log, checkpoint, finish."""

    def __init__(self, cfg: TrainConfig, ctx, splits: ImageSplits, resume_step: int | None):
        self.cfg, self.ctx, self.run_dir = cfg, ctx, Path(cfg.out)
        self.device = device = _resolve_device(cfg, ctx)
        if cfg.batch_size % (cfg.grad_accum * ctx.world_size):
            raise ValueError(
                f"--batch-size {cfg.batch_size} must be divisible by --grad-accum x processes = "
                f"{cfg.grad_accum} x {ctx.world_size}"
            )
        info = data_info(splits)
        seed_everything(cfg.seed)
        self.model, self.flow = build_from_config(cfg, info)
        self.model.to(device)
        self.ema = EMA(self.model, decay=cfg.ema_decay)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
            weight_decay=cfg.weight_decay,
        )  # fmt: skip
        self.sched = lr_schedule(self.opt, cfg)
        self.ckpt = Checkpointer(self.run_dir, keep=cfg.keep)
        self.start = self._start(resume_step, info)
        self.prepared = self._prepare()
        self.net = self._wrap()
        self.batches, self.part = self._data(splits)
        # resume_step=start drops lines a killed run logged after its last checkpoint (all of them
        # when it died before the first one).
        self.log = MetricsLogger(
            self.run_dir, enabled=ctx.is_main, resume_step=self.start, tensorboard=cfg.tensorboard
        )
        self.bar = progress_bar(
            cfg.steps, initial=self.start, enabled=ctx.is_main and cfg.progress, desc="train"
        )
        self.g = torch.Generator(device)  # reseeded per micro-step: draws of (seed, step)

    def _start(self, resume_step: int | None, info: dict[str, Any]) -> int:
        """Load the newest checkpoint (resume) or write ``config.json`` (fresh); the first step."""
        start, run = 0, run_directory(self.run_dir)
        if resume_step is not None:
            start = self.ckpt.load(
                model=self.model, ema=self.ema, optimizer=self.opt, scheduler=self.sched
            ).step
            if self.ctx.is_main:
                run.record_resume(self.cfg.options())
        elif self.ctx.is_main:
            run.write_config({**self.cfg.options(), "extra": self.cfg.extra, "data_info": info})
        self.ctx.barrier()
        return start

    def _prepare(self) -> dict[str, float]:
        """An objective's work before the first step (``--objective reflow``: the teacher's pairs
        and, on a fresh run, its weights; the EMA copies the weights at its first update)."""
        prepare = getattr(self.flow, "prepare", None)
        if prepare is None:
            return {}
        spent = prepare(
            self.model, self.run_dir, fresh=self.start == 0, device=self.device, ctx=self.ctx
        )
        if spent and self.ctx.is_main:
            print(
                f"reflow pairs: {spent['wall']:.1f} s ({spent['cpu']:.1f} CPU-s)", file=sys.stderr
            )
        return spent

    def _wrap(self) -> nn.Module:
        net = self.ctx.wrap(self.model)
        if self.cfg.compile:
            # The network alone is compiled (the loss's argument checks stay eager); DDP's hooks
            # need graph breaks, so fullgraph only in one process.
            net = torch.compile(net, fullgraph=not self.ctx.is_distributed)
        return net

    def _data(self, splits: ImageSplits):
        """This rank's batches from ``start`` on, and its slice of each global micro-batch."""
        cfg, ctx = self.cfg, self.ctx
        accum, world = cfg.grad_accum, ctx.world_size
        micro_global = cfg.batch_size // accum  # global samples per micro-step
        per_rank = micro_global // world
        sampler = StepBatchSampler(
            len(splits.train), micro_global, seed=cfg.seed, start_step=self.start * accum,
            total_steps=cfg.steps * accum, rank=ctx.rank, world_size=world,
        )  # fmt: skip
        loader = make_loader(
            splits.train, sampler, num_workers=cfg.workers, pin_memory=self.device.type == "cuda"
        )
        part = StepSlice(micro_global, ctx.rank * per_rank, (ctx.rank + 1) * per_rank)
        return iter(loader), part

    def accumulate(self, step: int, loss_sum: torch.Tensor) -> None:
        """Forward and backward of the ``grad_accum`` micro-batches of ``step``; losses summed."""
        cfg, device = self.cfg, self.device
        accum, world = cfg.grad_accum, self.ctx.world_size
        use_bf16 = cfg.bf16 and device.type == "cuda"
        for a in range(accum):
            x_1, labels = next(self.batches)
            x_1, labels = x_1.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            # g: the global batch's draws; torch's global RNG: this rank's (dropout)
            seed_step(cfg.seed, step * accum + a, rank=self.ctx.rank, generator=self.g)
            sync = contextlib.nullcontext()
            if world > 1 and a < accum - 1:
                sync = self.net.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    loss = self.flow.loss(self.net, x_1, labels, self.part, self.g) / accum
                loss.backward()
            loss_sum += loss.detach()

    def optimizer_step(self) -> None:
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.ema.update(self.model)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        loss_sum = torch.zeros((), device=self.device)
        t_log = t0 = time.perf_counter()
        n_log = 0
        self.net.train()
        for step in range(self.start, cfg.steps):
            self.accumulate(step, loss_sum)
            self.optimizer_step()
            n_log += 1
            self.bar.update(1)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                mean = self.ctx.all_reduce_mean(loss_sum / n_log).item()  # the only host sync
                now = time.perf_counter()
                ips = cfg.batch_size * n_log / (now - t_log)
                self.log.log(done, loss=mean, lr=self.sched.get_last_lr()[0], images_per_s=ips)
                self.bar.set_postfix(loss=f"{mean:.4f}", img_s=f"{ips:.0f}")
                loss_sum.zero_()
                t_log, n_log = now, 0
            if self.ctx.is_main and (done % cfg.ckpt_every == 0 or done == cfg.steps):
                self.ckpt.save(done, model=self.model, ema=self.ema, optimizer=self.opt,
                               scheduler=self.sched, extra={"world_size": self.ctx.world_size})  # fmt: skip
        seconds = time.perf_counter() - t0
        self.bar.close()
        self.log.close()
        return self.finish(seconds)

    def finish(self, seconds: float) -> dict[str, Any]:
        """The loss curve and the class grid (rank 0); the run's summary."""
        cfg, run = self.cfg, self.run_dir
        if self.ctx.is_main:
            plot_metrics(run / "metrics.jsonl", run / "loss.png", keys=("loss",),
                         title=f"fm-image {cfg.data} ({cfg.flow}, {cfg.model})")  # fmt: skip
            write_class_grid(
                self.ema.module.eval(), self.flow, run / "samples.png", nfe=cfg.sample_nfe,
                method=cfg.sample_method if cfg.flow == "continuous" else "euler",
                cfg_scale=cfg.sample_cfg_scale, seed=cfg.seed, device=self.device,
            )  # fmt: skip
        trained = cfg.steps - self.start
        return {
            "run_dir": str(run),
            "step": cfg.steps,
            "trained_steps": trained,
            "seconds": seconds,
            "steps_per_s": trained / seconds if seconds > 0 else math.nan,
            "world_size": self.ctx.world_size,
            "rank": self.ctx.rank,
            **({"prepare_seconds": self.prepared["wall"]} if self.prepared else {}),
            "config": dataclasses.asdict(cfg),
        }
