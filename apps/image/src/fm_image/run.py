"""Open a finished (or running) training run for sampling and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fm_core.training import RunError
from fm_image.config import TrainConfig, resolve_device, run_directory
from fm_image.train import build_from_config

__all__ = ["LoadedRun", "load_run", "resolve_device"]


@dataclass
class LoadedRun:
    """A run's configuration, data description, network (in eval mode) and flow."""

    cfg: TrainConfig
    info: dict[str, Any]
    model: nn.Module
    flow: Any
    step: int
    device: torch.device


def load_run(
    run_dir: str | Path, *, ema: bool = True, device: str = "auto", checkpoint: str = "latest"
) -> LoadedRun:
    """Rebuild a run's network from ``config.json`` and load its newest checkpoint.

    Args:
        run_dir: the directory ``fm-image train --out`` wrote.
        ema: load the EMA weights (default) instead of the raw ones.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        checkpoint: ``"latest"``, or ``"best"`` (an fm-image run keeps no best-validation copy,
            so it falls back to the latest; accepted for one vocabulary with fm-text).

    Raises:
        RunError: not an fm-image run, or no checkpoint yet; ``CheckpointError`` for a corrupt one.
    """
    run = run_directory(run_dir)
    obj = run.read_config()
    if "data_info" not in obj:
        raise RunError(f"{run_dir}/config.json has no data_info (not written by fm-image train)")
    cfg = TrainConfig.from_json(obj)
    info = obj["data_info"]
    if run.latest_step() is None:
        raise RunError(f"{run_dir} has no checkpoint yet (train it first)")
    dev = resolve_device(device)
    model, flow = build_from_config(cfg, info)
    step, _ = run.load_weights(model, checkpoint=checkpoint, ema=ema)
    return LoadedRun(cfg, info, model.to(dev).eval(), flow, step, dev)


def spread_labels(num: int, num_classes: int) -> torch.Tensor:
    """``num`` labels spread evenly over the classes, in order (``-1`` for an unconditional model)."""
    if num_classes == 0:
        return torch.full((num,), -1, dtype=torch.long)
    return torch.arange(num, dtype=torch.long) * num_classes // num
