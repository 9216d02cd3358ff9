"""The training recipe: one readable loop for the flow model and the autoregressive baseline.

Run alone (``fm-text train``) or under ``torchrun --nproc-per-node N`` (DDP: each process draws its
own batches; rank 0 writes). Every ``eval_every`` steps the EMA weights are scored on the validation
split (the flow model's ELBO bound per token, the baseline's exact NLL per token); the best so far is
copied to ``RUN_DIR/best`` and a checkpoint is written. A run stops at ``steps`` or after ``patience``
evaluations without improvement; called again with a larger ``steps`` it resumes.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn

from fm_core.training import (
    EMA,
    Checkpointer,
    MetricsLogger,
    init_distributed,
    plot_metrics,
    progress_bar,
    seed_everything,
    warmup_cosine_schedule,
    write_json_atomic,
)
from fm_text.config import RESUMABLE_FIELDS, TrainConfig, load_config
from fm_text.model import TextTransformer
from fm_text.objective import FlowObjective, ar_nll, fused_loss_available
from fm_text.run import best_dir, prepare_data

__all__ = ["check_resume", "train", "validation_nll"]


def check_resume(config: TrainConfig, run_dir: Path) -> int:
    """Validate ``run_dir`` for ``config`` before anything is written; the step to start from.

    Raises:
        ValueError: the folder holds something else, the stored config differs in a field that
            cannot change, or the run is already at ``config.steps``.
    """
    if not (run_dir / "config.json").is_file():
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise ValueError(f"out: {run_dir} exists and is not an fm-text run; use a new folder")
        return 0
    stored = load_config(run_dir)
    for key, value in stored.to_dict().items():
        if key not in RESUMABLE_FIELDS and getattr(config, key) != value:
            raise ValueError(
                f"out: {run_dir} was trained with {key}={value!r}, got {getattr(config, key)!r}; "
                "only --steps (and logging options) may change on resume"
            )
    latest = Checkpointer(run_dir).latest_step() or 0
    if latest >= config.steps:
        raise ValueError(
            f"steps: {run_dir} is already at step {latest}; pass --steps larger than {latest} to resume"
        )
    return latest


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
    if objective is not None:
        out = objective.elbo(num_time_samples).evaluate(objective.posterior(net), batches)
        out = out.sequence_nll
    else:
        out = torch.cat([ar_nll(net, b, bos_id, mask_id).double().sum(-1).cpu() for b in batches])
    net.train(was_training)
    return out


def train(config: TrainConfig, run_dir: str | Path) -> dict:
    """Train (or resume) a run; returns a summary (last step, best validation NLL and its step)."""
    run_dir = Path(run_dir)
    if config.fused_loss == "on":
        fused_loss_available(raise_error=True)  # before any work
    start = check_resume(config, run_dir)
    with init_distributed() as ctx:
        return _train(config, run_dir, start, ctx)


def _train(config, run_dir, start, ctx) -> dict:
    cache_dir = config.cache_dir
    device = ctx.device
    # Rank 0 trains the tokenizer and writes the caches; the others then read them.
    if ctx.is_main:
        data = prepare_data(config, run_dir, cache_dir, write=True)
        if start == 0:
            config.save(run_dir / "config.json")
        else:  # keep the stored settings, record the new budget
            stored = load_config(run_dir)
            for key in RESUMABLE_FIELDS:
                setattr(stored, key, getattr(config, key))
            stored.save(run_dir / "config.json")
    ctx.barrier()
    if not ctx.is_main:
        data = prepare_data(config, run_dir, cache_dir, write=False)
    tok = data.tokenizer

    seed_everything(config.seed + ctx.rank)
    net = TextTransformer(config.model_config(tok.vocab_size)).to(device)
    ema = EMA(net, decay=config.ema_decay)
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
    scheduler = warmup_cosine_schedule(
        optimizer,
        warmup_steps=min(config.warmup, config.steps),
        total_steps=config.steps,
        min_lr_ratio=config.min_lr_ratio,
    )
    objective = None
    if config.model == "flow":
        fused = config.fused_loss == "on" or (
            config.fused_loss == "auto"
            and config.loss == "gkl"
            and device.type == "cuda"
            and fused_loss_available()
        )
        objective = FlowObjective.from_config(config, tok, fused=fused)
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + ctx.rank)
    checkpointer = Checkpointer(run_dir, keep=2)
    best_ckpt = Checkpointer(best_dir(run_dir), keep=1)
    best, best_step, bad_evals, elapsed_before = math.inf, -1, 0, 0.0
    if start:
        state = checkpointer.load(
            model=net, ema=ema, optimizer=optimizer, scheduler=scheduler, map_location=device
        )
        if ctx.world_size == 1:
            generator.set_state(state.extra["generator"])
        else:  # each process draws its own batches: reseed by rank and step
            generator.manual_seed((config.seed * 1_000_003 + ctx.rank) * 1_000_003 + start)
        best, best_step = float(state.extra["best"]), int(state.extra["best_step"])
        bad_evals = int(state.extra["bad_evals"])
        elapsed_before = float(state.extra.get("elapsed_s", 0.0))
        # The scheduler was built for the new budget; load_state_dict keeps its (function) factor,
        # so a larger --steps stretches the cosine horizon from here on.
    model = ctx.wrap(net)
    if config.compile:
        model = torch.compile(model)
    posterior = objective.posterior(model) if objective else None
    val_chunks = data.val.chunks(config.context, 0, config.eval_sequences).to(device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )
    logger = MetricsLogger(run_dir, enabled=ctx.is_main, resume_step=start if start else None)
    bar = progress_bar(
        config.steps, initial=start, enabled=ctx.is_main and config.progress, desc=config.model
    )
    if ctx.is_main and start == 0:
        logger.log(0, parameters=net.num_parameters(), train_tokens=len(data.train))

    def evaluate_and_save(step: int) -> bool:
        nonlocal best, best_step, bad_evals
        with autocast:
            nll = validation_nll(
                ema.module,
                objective,
                val_chunks,
                bos_id=tok.eos_id,
                mask_id=tok.mask_id,
                num_time_samples=config.eval_time_samples,
            )
        val = float(nll.sum()) / val_chunks.numel()
        improved = val < best
        if improved:
            best, best_step, bad_evals = val, step, 0
        else:
            bad_evals += 1
        if ctx.is_main:
            logger.log(step, val_nll=val, val_ppl=math.exp(val), best_val_ppl=math.exp(best))
            if improved:
                best_ckpt.save(step, model=ema.module, ema=ema, extra={"val_nll": val})
            extra = {"generator": generator.get_state(), "best": best, "best_step": best_step}
            extra["bad_evals"] = bad_evals
            extra["elapsed_s"] = elapsed_before + time.perf_counter() - t0
            checkpointer.save(
                step,
                model=model,
                ema=ema,
                optimizer=optimizer,
                scheduler=scheduler,
                extra=extra,
            )
        ctx.barrier()
        return config.patience > 0 and bad_evals >= config.patience

    t0 = time.perf_counter()
    step, stopped = start, False
    loss_sum, window = torch.zeros((), device=device), 0  # the logged loss: mean since the last log
    model.train()
    while step < config.steps:
        x_1 = data.train.random_windows(config.batch_size, config.context, generator).to(device)
        with autocast:
            if objective is not None:
                loss = objective.loss(posterior, x_1, generator)
            else:
                loss = ar_nll(model, x_1, tok.eos_id, tok.mask_id).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        ema.update(net)
        loss_sum += loss.detach()
        window += 1
        step += 1
        bar.update(1)
        if step % config.log_every == 0 or step == config.steps:
            scalars = {
                "loss": float(ctx.all_reduce_mean(loss_sum / window)),
                "lr": scheduler.get_last_lr()[0],
            }
            scalars["grad_norm"] = float(grad_norm)
            scalars["steps_per_s"] = (step - start) / (time.perf_counter() - t0)
            scalars["elapsed_s"] = elapsed_before + time.perf_counter() - t0
            logger.log(step, **scalars)
            bar.set_postfix(loss=f"{scalars['loss']:.3f}")
            loss_sum, window = torch.zeros((), device=device), 0
        if step % config.eval_every == 0 or step == config.steps:
            if evaluate_and_save(step):
                stopped = True
                break
    bar.close()
    logger.close()
    summary = {
        "step": step,
        "best_val_nll": best,
        "best_val_ppl": math.exp(best),
        "best_step": best_step,
        "stopped_early": stopped,
        "seconds": time.perf_counter() - t0,
        "parameters": net.num_parameters(),
    }
    if ctx.is_main:
        plot_metrics(
            run_dir / "metrics.jsonl",
            run_dir / "loss.png",
            keys=("loss", "val_ppl"),
            smooth=("loss",),
        )
        write_json_atomic(run_dir / "summary.json", summary)
    return summary
