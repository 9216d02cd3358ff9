"""The training recipe: one readable loop for the flow model and the autoregressive baseline.

Run alone (``fm-text train``) or under ``torchrun --nproc-per-node N`` (DDP; rank 0 writes).
``batch_size`` is the global batch: each step draws ``batch_size`` windows for all processes and each
process trains on its slice. Every draw of a step is a function of ``(seed, step, rank)``
(``fm_core.training.seed_step``): the windows from the shared stream, the flow's times and source
tokens and dropout from the process's own, so a resumed run draws exactly what the uninterrupted one
would have. Every ``eval_every`` steps the EMA weights are scored on the validation split (the flow
model's ELBO bound per token, the baseline's exact NLL per token); the best so far is copied to
``RUN_DIR/best`` and a checkpoint is written. A run stops at ``steps`` or after ``patience``
evaluations without improvement; called again with a larger ``steps`` it resumes, and with a
``steps`` it has already reached it does nothing (and says so).
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from fm_core.training import (
    EMA,
    MetricsLogger,
    init_distributed,
    plot_metrics,
    progress_bar,
    seed_everything,
    seed_step,
    warmup_cosine_schedule,
    write_json_atomic,
)
from fm_text.config import TrainConfig, run_directory
from fm_text.model import TextTransformer
from fm_text.objective import FlowObjective, ar_nll, fused_loss_available
from fm_text.run import RunData, prepare_data

__all__ = ["check_resume", "train", "validation_nll"]


def check_resume(config: TrainConfig, run_dir: Path) -> int | None:
    """Validate ``run_dir`` for ``config`` before anything is written; the step to start from.

    Returns:
        ``None`` for a fresh run, else the step of the run's newest checkpoint.

    Raises:
        RunError: the folder holds something else, or the stored config differs in a field that
            cannot change on resume (see ``RESUMABLE_FIELDS``).
    """
    return run_directory(run_dir).check_resume(config.to_dict())


@torch.no_grad()
def validation_nll(
    net: nn.Module,
    objective: FlowObjective | None,
    chunks: Tensor,
    *,
    bos_id: int,
    mask_id: int,
    num_time_samples: int,
    batch_size: int = 32,
) -> Tensor:
    """NLL (nats) of each validation sequence ``[N]``: the ELBO bound (flow) or exact (ar).

    Args:
        net: the transformer (eval mode is set here and restored).
        objective: the flow objective (``None``: the autoregressive model).
        chunks: validation sequences, long ``[N, L]`` on the model's device.
        bos_id: first input of the autoregressive model.
        mask_id: the mask token.
        num_time_samples: ELBO time strata per sequence (flow).
        batch_size: sequences per forward pass.
    """
    was_training = net.training
    net.eval()
    batches = chunks.split(batch_size)
    if objective is not None and objective.block_size:
        out = objective.block_sequence_nll(objective.posterior(net), batches, num_time_samples)
    elif objective is not None:
        out = objective.elbo(num_time_samples).evaluate(objective.posterior(net), batches)
        out = out.sequence_nll
    else:
        out = torch.cat([ar_nll(net, b, bos_id, mask_id).double().sum(-1).cpu() for b in batches])
    net.train(was_training)
    return out


def train(config: TrainConfig, run_dir: str | Path) -> dict:
    """Train (or resume) a run; returns a summary (last step, best validation NLL and its step).

    A run already at ``config.steps`` (or past it) is left as it is: one line on stderr says so,
    and the summary reports ``trained_steps`` 0.
    """
    run_dir = Path(run_dir)
    if config.fused_loss == "on":
        fused_loss_available(raise_error=True)  # before any work
    start = check_resume(config, run_dir)
    finished = run_directory(run_dir).finished_message(start, config.steps)
    if finished:
        print(finished, file=sys.stderr)
        path = run_dir / "summary.json"
        before = json.loads(path.read_text()) if path.is_file() else {}
        return {**before, "step": start, "trained_steps": 0, "seconds": 0.0}
    with init_distributed() as ctx:
        return _train(config, run_dir, start or 0, ctx)


def _prepare_run(config: TrainConfig, run_dir: Path, start: int, ctx) -> RunData:
    """Tokenizer and token caches (rank 0 makes them, the others read them); the config saved."""
    if ctx.is_main:
        data = prepare_data(config, run_dir, config.cache_dir, write=True)
        if start == 0:
            config.save(run_dir)
        else:  # keep the stored settings, record the new budget
            run_directory(run_dir).record_resume(config.to_dict())
    ctx.barrier()
    if not ctx.is_main:
        data = prepare_data(config, run_dir, config.cache_dir, write=False)
    return data


def _optimizer(net: TextTransformer, config: TrainConfig):
    """AdamW (weight decay on matrices only) and the warmup + cosine schedule over ``steps``."""
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (decay if p.ndim >= 2 and "embed" not in name else no_decay).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.98),
    )
    # On resume the scheduler is built for the new budget; load_state_dict keeps its (function)
    # factor, so a larger --steps stretches the cosine horizon from there on.
    scheduler = warmup_cosine_schedule(
        optimizer,
        warmup_steps=min(config.warmup_steps, config.steps),
        total_steps=config.steps,
        min_lr_ratio=config.min_lr_ratio,
    )
    return optimizer, scheduler


def _objective(config: TrainConfig, tok, device: torch.device) -> FlowObjective | None:
    """The flow objective (``None`` for the autoregressive baseline)."""
    if config.model != "flow":
        return None
    fused = config.fused_loss == "on" or (
        config.fused_loss == "auto"
        and not config.block_size
        and config.loss == "gkl"
        and device.type == "cuda"
        and fused_loss_available()
    )
    return FlowObjective.from_config(config, tok, fused=fused)


@dataclass
class _Progress:
    """What a checkpoint carries besides the weights: the early-stopping state and the clock."""

    best: float = math.inf
    best_step: int = -1
    bad_evals: int = 0
    elapsed_before: float = 0.0

    @classmethod
    def from_extra(cls, extra: dict) -> _Progress:
        return cls(
            float(extra["best"]),
            int(extra["best_step"]),
            int(extra["bad_evals"]),
            float(extra.get("elapsed_s", 0.0)),
        )


class _Trainer:
    """One run's training loop, in named steps: draw, step, log, evaluate and save."""

    def __init__(self, config: TrainConfig, run_dir: Path, start: int, ctx) -> None:
        self.config, self.run_dir, self.start, self.ctx = config, run_dir, start, ctx
        self.device = device = ctx.device
        if config.batch_size % ctx.world_size:
            raise ValueError(
                f"--batch-size {config.batch_size} (the global batch) must be divisible by the "
                f"number of processes {ctx.world_size}"
            )
        self.per_rank = config.batch_size // ctx.world_size
        self.data = _prepare_run(config, run_dir, start, ctx)
        self.tok = self.data.tokenizer
        seed_everything(config.seed)  # the same initial weights on every process
        self.net = TextTransformer(config.model_config(self.tok.vocab_size)).to(device)
        self.ema = EMA(self.net, decay=config.ema_decay)
        self.optimizer, self.scheduler = _optimizer(self.net, config)
        self.objective = _objective(config, self.tok, device)
        self.generator = torch.Generator()  # the shared draws, reseeded every step
        run = run_directory(run_dir)
        self.checkpointer = run.checkpointer(keep=2)
        self.best_ckpt = run.best_checkpointer()
        self.progress = _Progress()
        if start:
            state = self.checkpointer.load(
                model=self.net, ema=self.ema, optimizer=self.optimizer,
                scheduler=self.scheduler, map_location=device,
            )  # fmt: skip
            self.progress = _Progress.from_extra(state.extra)
        self.model = ctx.wrap(self.net)
        if config.compile:
            self.model = torch.compile(self.model)
        self.posterior = self.objective.posterior(self.model) if self.objective else None
        self.val_chunks = self.data.val.chunks(config.context, 0, config.eval_sequences).to(device)
        cuda = device.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
        self.logger = MetricsLogger(run_dir, enabled=ctx.is_main, resume_step=start or None)
        self.bar = progress_bar(
            config.steps, initial=start, enabled=ctx.is_main and config.progress, desc=config.model
        )
        if ctx.is_main and start == 0:
            self.logger.log(
                0, parameters=self.net.num_parameters(), train_tokens=len(self.data.train)
            )
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return self.progress.elapsed_before + time.perf_counter() - self.t0

    def batch(self, step: int) -> Tensor:
        """This process's slice of step ``step``'s global batch (draws seeded by the step)."""
        seed_step(self.config.seed, step, rank=self.ctx.rank, generator=self.generator)
        cfg = self.config
        windows = self.data.train.random_windows(cfg.batch_size, cfg.context, self.generator)
        lo = self.ctx.rank * self.per_rank
        return windows[lo : lo + self.per_rank].to(self.device)

    def step(self, x_1: Tensor) -> tuple[Tensor, Tensor]:
        """One optimiser step on ``x_1``; the loss and the gradient norm (on the device)."""
        with self.autocast:
            if self.objective is not None:
                # The flow's own draws (times, source tokens) come from this process's stream.
                loss = self.objective.loss(self.posterior, x_1, torch.default_generator)
            else:
                loss = ar_nll(self.model, x_1, self.tok.eos_id, self.tok.mask_id).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.net)
        return loss.detach(), grad_norm

    def log(self, step: int, loss_mean: Tensor, grad_norm: Tensor) -> None:
        scalars = {
            "loss": float(self.ctx.all_reduce_mean(loss_mean)),
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
            "steps_per_s": (step - self.start) / (time.perf_counter() - self.t0),
            "elapsed_s": self.elapsed(),
        }
        self.logger.log(step, **scalars)
        self.bar.set_postfix(loss=f"{scalars['loss']:.3f}")

    def evaluate_and_save(self, step: int) -> bool:
        """Score the EMA weights, keep the best copy, checkpoint; whether patience ran out."""
        cfg, prog, tok = self.config, self.progress, self.tok
        with self.autocast:
            nll = validation_nll(
                self.ema.module, self.objective, self.val_chunks, bos_id=tok.eos_id,
                mask_id=tok.mask_id, num_time_samples=cfg.eval_time_samples,
            )  # fmt: skip
        val = float(nll.sum()) / self.val_chunks.numel()
        improved = val < prog.best
        if improved:
            prog.best, prog.best_step, prog.bad_evals = val, step, 0
        else:
            prog.bad_evals += 1
        if self.ctx.is_main:
            best_ppl = math.exp(prog.best)
            self.logger.log(step, val_nll=val, val_ppl=math.exp(val), best_val_ppl=best_ppl)
            if improved:
                self.best_ckpt.save(
                    step, model=self.ema.module, ema=self.ema, extra={"val_nll": val}
                )
            extra = {"best": prog.best, "best_step": prog.best_step, "bad_evals": prog.bad_evals}
            extra["elapsed_s"] = self.elapsed()
            self.checkpointer.save(
                step, model=self.model, ema=self.ema, optimizer=self.optimizer,
                scheduler=self.scheduler, extra=extra,
            )  # fmt: skip
        self.ctx.barrier()
        return cfg.patience > 0 and prog.bad_evals >= cfg.patience

    def run(self) -> dict:
        cfg = self.config
        step, stopped = self.start, False
        loss_sum, window = torch.zeros((), device=self.device), 0  # logged: mean since last log
        self.model.train()
        while step < cfg.steps:
            loss, grad_norm = self.step(self.batch(step))
            loss_sum += loss
            window += 1
            step += 1
            self.bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                self.log(step, loss_sum / window, grad_norm)
                loss_sum, window = torch.zeros((), device=self.device), 0
            if step % cfg.eval_every == 0 or step == cfg.steps:
                if self.evaluate_and_save(step):
                    stopped = True
                    break
        self.bar.close()
        self.logger.close()
        return self.finish(step, stopped)

    def finish(self, step: int, stopped: bool) -> dict:
        prog = self.progress
        summary = {
            "step": step,
            "trained_steps": step - self.start,
            "best_val_nll": prog.best,
            "best_val_ppl": math.exp(prog.best),
            "best_step": prog.best_step,
            "stopped_early": stopped,
            "seconds": time.perf_counter() - self.t0,
            "parameters": self.net.num_parameters(),
        }
        if self.ctx.is_main:
            plot_metrics(
                self.run_dir / "metrics.jsonl", self.run_dir / "loss.png",
                keys=("loss", "val_ppl"), smooth=("loss",),
            )  # fmt: skip
            write_json_atomic(self.run_dir / "summary.json", summary)
        return summary


def _train(config: TrainConfig, run_dir: Path, start: int, ctx) -> dict:
    return _Trainer(config, run_dir, start, ctx).run()
