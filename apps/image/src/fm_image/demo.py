"""``fm-image demo``: train, sample and evaluate on digits with the defaults, in one command.

Its budget is a number of optimizer steps, so the same command gives the same model on any
machine, however busy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fm_image.config import TrainConfig

__all__ = ["run_demo"]


def run_demo(
    out: str | Path, *, steps: int | None = None, progress: bool = True, log=print
) -> dict[str, Any]:
    """Train ``digits`` into ``out`` (resuming if it exists), write 100 samples, evaluate.

    Returns:
        The evaluation's JSON object, with the training seconds and the picture paths added.
    """
    import torch

    from fm_image.evaluate import evaluate
    from fm_image.grid import save_samples
    from fm_image.run import load_run, spread_labels
    from fm_image.train import train

    cfg = TrainConfig(out=str(out), progress=progress)
    if steps is not None:
        cfg.steps = steps
    summary = train(cfg)
    run = load_run(out)
    labels = spread_labels(100, run.flow.num_classes)
    g = torch.Generator(run.device).manual_seed(1)
    images, _ = run.flow.sample(run.model, labels.to(run.device), nfe=20, generator=g)
    png, npz = save_samples(images.cpu(), labels, Path(out) / "demo-samples.png", nrow=10)
    result = evaluate(out, log=log)
    result["train_seconds"] = round(summary["seconds"], 1)
    result["trained_steps"] = summary["trained_steps"]
    for name, path in (
        ("loss curve", Path(out) / "loss.png"),
        ("training-end samples (one row per class)", Path(out) / "samples.png"),
        ("demo samples", png),
        ("demo samples as arrays", npz),
    ):
        log(f"{name}: {path}")
    result["pictures"] = [str(Path(out) / "loss.png"), str(Path(out) / "samples.png"), str(png)]
    return result
