"""Open a finished (or running) training run for sampling and evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fm_core.training import Checkpointer, load_weights
from fm_image.config import RunError, TrainConfig, read_run_config, resolve_device
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


def load_run(run_dir: str | Path, *, ema: bool = True, device: str = "auto") -> LoadedRun:
    """Rebuild a run's network from ``config.json`` and load its newest checkpoint.

    Args:
        run_dir: the directory ``fm-image train --out`` wrote.
        ema: load the EMA weights (default) instead of the raw ones.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.

    Raises:
        RunError: not an fm-image run, or no checkpoint yet; ``CheckpointError`` for a corrupt one.
    """
    obj = read_run_config(run_dir)
    if "data_info" not in obj:
        raise RunError(f"{run_dir}/config.json has no data_info (not written by fm-image train)")
    cfg = TrainConfig.from_json(obj)
    info = obj["data_info"]
    if Checkpointer(run_dir).latest_step() is None:
        raise RunError(f"{run_dir} has no checkpoint yet (train it first)")
    dev = resolve_device(device)
    model, flow = build_from_config(cfg, info)
    step = load_weights(run_dir, model, ema=ema)
    return LoadedRun(cfg, info, model.to(dev).eval(), flow, step, dev)


def spread_labels(num: int, num_classes: int) -> torch.Tensor:
    """``num`` labels spread evenly over the classes, in order (``-1`` for an unconditional model)."""
    if num_classes == 0:
        return torch.full((num,), -1, dtype=torch.long)
    return torch.arange(num, dtype=torch.long) * num_classes // num
