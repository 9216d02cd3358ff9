"""``fm-image finetune``: reward fine-tuning of a continuous run with Adjoint Matching.

The reward ``class:K`` is $\\log p(K \\mid x)$ under the run's own classifier (the one
``evaluate`` trains on the training split and caches in ``RUN/classifier``), read on the
model-space image $x \\in [-1, 1]$; the fine-tuned model targets $p_{\\text{base}}(x)\\,p(K \\mid x)^\\lambda$.
The loop is fm-core's (``memoryless_sample``, ``lean_adjoint``, ``AdjointMatchingLoss``); this
module is data, wiring and the new run directory, which ``sample`` and ``evaluate`` open like any
other run.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fm_core.adaptation import AdjointMatchingLoss, lean_adjoint, memoryless_sample
from fm_core.training import Checkpointer, RunError
from fm_image.config import run_directory

__all__ = ["class_reward", "finetune", "parse_reward"]


def parse_reward(text: str, num_classes: int) -> int:
    """``"class:K"`` -> ``K`` (a class of the data set), or ``ValueError``."""
    kind, _, value = str(text).partition(":")
    if kind != "class" or not value.strip().lstrip("-").isdigit():
        raise ValueError(f"--reward must be class:K (K a class index), got {text!r}")
    k = int(value)
    if not 0 <= k < num_classes:
        raise ValueError(
            f"--reward class:{k} is not a class of this data set (0..{num_classes - 1})"
        )
    return k


def class_reward(classifier: torch.nn.Module, k: int):
    """$r(x) = \\log p(k \\mid x)$ for model-space images ``[B, C, H, W]`` (differentiable)."""

    def reward(x: Tensor) -> Tensor:
        return torch.log_softmax(classifier.head(classifier.body(x.float())), dim=-1)[:, k]

    return reward


def finetune(
    run_dir: str | Path,
    out: str | Path,
    *,
    reward: str,
    scale: float,
    iters: int = 200,
    batch_size: int = 64,
    sde_steps: int = 20,
    num_times: int = 10,
    lr: float = 2e-4,
    seed: int = 0,
    classifier_steps: int = 800,
    device: str = "auto",
    log=print,
) -> dict[str, Any]:
    """Fine-tune ``run_dir``'s EMA model towards ``reward`` and write the new run ``out``.

    Args:
        run_dir: a continuous-flow fm-image run (its unconditional / null-label model is tuned).
        out: the new run directory (must not hold a run yet).
        reward: ``"class:K"``.
        scale: $\\lambda > 0$.
        iters: optimizer steps (one batch of memoryless trajectories each).
        batch_size: trajectories per step.
        sde_steps: steps of the memoryless SDE and of the lean adjoint.
        num_times: grid times per trajectory in the loss.
        lr: Adam learning rate.
        seed: seeds the noise and the choice of times.
        classifier_steps: training steps of the run's classifier (cached in ``run_dir``).
        device: ``auto``, ``cpu`` or ``cuda[:N]``.

    Returns:
        A summary: the reward and the app classifier's class-``K`` fraction on the trajectories'
        end points, at the start and at the end, and the seconds taken.
    """
    from fm_image.train import write_class_grid

    _check_options(iters=iters, batch_size=batch_size, sde_steps=sde_steps,
                   num_times=num_times, scale=scale, lr=lr)  # fmt: skip
    target = run_directory(out)
    if target.exists():
        raise RunError(f"--out {out} already holds a run (choose a new folder)")
    obj = run_directory(run_dir).read_config()
    run, classifier, k = _load(run_dir, reward, classifier_steps, device, log)
    t0 = time.perf_counter()
    fine, history = _tune(run, classifier, k, scale=float(scale), iters=iters,
                          batch_size=batch_size, sde_steps=sde_steps, num_times=num_times,
                          lr=lr, seed=seed, log=log)  # fmt: skip
    seconds = time.perf_counter() - t0
    target.write_config({**obj, "out": str(out), "finetune": {
        "base_run": str(run_dir), "base_step": run.step, "reward": reward, "scale": scale,
        "iters": iters, "batch_size": batch_size, "sde_steps": sde_steps,
        "num_times": num_times, "lr": lr, "seed": seed}})  # fmt: skip
    Checkpointer(out).save(iters, model=fine)
    png = write_class_grid(
        fine.eval(), run.flow, Path(out) / "samples.png", nfe=20, method="midpoint",
        cfg_scale=0.0, seed=seed, device=run.device,
    )  # fmt: skip
    return {
        "out": str(out), "reward": reward, "scale": scale, "iters": iters,
        "start": history[0], "end": history[-1], "seconds": round(seconds, 1),
        "samples": str(png),
    }  # fmt: skip


def _check_options(*, scale, lr, **counts) -> None:
    """Every option checked before any work, named as on the command line."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an int >= 1, got {value!r}")
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"--scale must be a number > 0, got {scale!r}")
    if not lr > 0:
        raise ValueError(f"--lr must be > 0, got {lr!r}")


def _load(run_dir, reward: str, classifier_steps: int, device: str, log):
    """The base run, its classifier (frozen, on the run's device) and the reward's class."""
    from fm_image.classifier import load_or_train_classifier
    from fm_image.data import load_splits
    from fm_image.run import load_run

    run = load_run(run_dir, device=device)
    if run.cfg.flow != "continuous":
        raise ValueError(
            f"--run {run_dir} is a {run.cfg.flow} flow; finetune needs a continuous one"
        )
    splits = load_splits(run.cfg.data, run.cfg.data_dir, image_size=run.cfg.image_size)
    k = parse_reward(reward, splits.num_classes)
    classifier, clf_acc = load_or_train_classifier(run_dir, splits, steps=classifier_steps)
    classifier = classifier.to(run.device).requires_grad_(False)
    log(f"reward: log p({k} | x) by the run's classifier (held-out accuracy {clf_acc:.4f})")
    return run, classifier, k


def _tune(run, classifier, k, *, scale, iters, batch_size, sde_steps, num_times, lr, seed, log):
    """Adjoint Matching iterations on a copy of the run's model; the model and a history."""
    dev = run.device
    reward_fn = class_reward(classifier, k)
    base = run.model.requires_grad_(False)
    fine = copy.deepcopy(base).requires_grad_(True)
    extras: dict[str, Tensor] = {}
    if run.flow.num_classes:  # tune the null-label (unconditional) model
        extras["label"] = torch.full((batch_size,), run.flow.num_classes, device=dev)
    scheduler = run.flow.path.scheduler
    grid = torch.linspace(0.0, 1.0, sde_steps + 1, device=dev)
    loss_fn = AdjointMatchingLoss(scheduler)
    opt = torch.optim.Adam(fine.parameters(), lr=lr)
    g = torch.Generator(dev).manual_seed(seed)
    gcpu = torch.Generator().manual_seed(seed)
    history = []
    for it in range(iters):
        x0 = torch.randn((batch_size, *run.flow.shape), device=dev, generator=g)
        traj = memoryless_sample(fine, x0, scheduler, grid, generator=g, **extras)
        w = lean_adjoint(base, traj, grid, reward_fn, scale=scale, **extras)
        loss = loss_fn.trajectory_loss(
            fine, base, traj, w, grid, num_times=num_times, generator=gcpu, **extras
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % 25 == 0 or it == iters - 1:
            with torch.no_grad():
                logits = classifier.head(classifier.body(traj[-1]))
                r = torch.log_softmax(logits, -1)[:, k].mean().item()
                frac = (logits.argmax(-1) == k).float().mean().item()
            history.append({"iter": it, "loss": loss.item(), "reward": r, "class_fraction": frac})
            log(f"iter {it}: loss {loss.item():.4f} reward {r:.3f} class-{k} fraction {frac:.3f}")
    return fine, history
