"""``fm-image evaluate``: Fréchet distances and class accuracy judged by the app's classifier.

The Fréchet distance goes through torchmetrics' ``FrechetInceptionDistance`` with the classifier's
penultimate layer as its custom ``feature`` module (torchmetrics accepts any ``nn.Module`` with a
``num_features`` attribute and computes the statistics and the matrix square root in float64), so
``fd`` and the optional Inception ``fid`` are computed by the same code.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fm_image.classifier import ClassifierFeatures, load_or_train_classifier
from fm_image.data import load_splits
from fm_image.run import load_run, spread_labels

__all__ = ["evaluate", "evaluate_seeds", "frechet_distance"]


def frechet_distance(feature: torch.nn.Module, real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between uint8 image sets ``[N, C, H, W]`` in ``feature``'s space."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=feature, normalize=False)
    with torch.no_grad():
        for chunk in real.split(512):
            metric.update(chunk, real=True)
        for chunk in fake.split(512):
            metric.update(chunk, real=False)
        return float(metric.compute())


def inception_fid(weights: str | Path, real: Tensor, fake: Tensor) -> float:
    """Standard FID with a local Inception weights file (torch-fidelity's FID Inception v3)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    path = Path(weights)
    if not path.is_file():
        raise ValueError(f"--inception-weights {path} does not exist")
    try:
        metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path))
    except ModuleNotFoundError as e:
        raise ValueError(f"--inception-weights needs torch-fidelity installed ({e})") from None

    def rgb(x: Tensor) -> Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    for chunk in real.split(64):
        metric.update(rgb(chunk), real=True)
    for chunk in fake.split(64):
        metric.update(rgb(chunk), real=False)
    return float(metric.compute())


def evaluate(
    run_dir: str | Path,
    *,
    num: int = 200,
    nfe: int = 20,
    method: str = "midpoint",
    cfg_scale: float = 0.0,
    seed: int = 0,
    classifier_steps: int = 800,
    inception_weights: str | None = None,
    device: str = "auto",
    log=print,
) -> dict[str, Any]:
    """Sample ``num`` class-conditional images and judge them against held-out data.

    ``fd`` compares the samples with a held-out subset A of size ``num``; ``fd_real`` compares A
    with a disjoint held-out subset B of the same size (the floor a perfect generator reaches at
    this sample size). Needs ``2 * num`` held-out images.

    Returns:
        ``fd``, ``fd_real``, ``class_accuracy``, ``classifier_accuracy``, ``nfe``,
        ``seconds_per_sample``, ``num``, ``step`` (and ``fid`` with ``inception_weights``).
    """
    run = load_run(run_dir, device=device)
    cfg = run.cfg
    splits = load_splits(cfg.data, cfg.data_dir, image_size=cfg.image_size)
    held = splits.heldout
    if num < 2 or 2 * num > len(held):
        raise ValueError(
            f"--num must lie in [2, {len(held) // 2}]: fd_real needs two disjoint held-out "
            f"subsets of --num images and {cfg.data} holds {len(held)} held-out images"
        )
    if inception_weights is not None and not Path(inception_weights).is_file():
        raise ValueError(f"--inception-weights {inception_weights} does not exist")
    classifier, clf_acc = load_or_train_classifier(run_dir, splits, steps=classifier_steps)
    log(f"classifier held-out accuracy: {clf_acc:.4f} ({len(held)} held-out images)")
    perm = torch.randperm(len(held), generator=torch.Generator().manual_seed(seed + 1))
    real = held.uint8()
    real_a, real_b = real[perm[:num]], real[perm[num : 2 * num]]

    labels = spread_labels(num, run.flow.num_classes).to(run.device)
    g = torch.Generator(run.device).manual_seed(seed)
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fake, used_nfe = run.flow.sample(
        run.model, labels, nfe=nfe, method=method, cfg_scale=cfg_scale, generator=g
    )
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    fake = fake.cpu()
    feature = ClassifierFeatures(classifier)
    result: dict[str, Any] = {
        "fd": frechet_distance(feature, real_a, fake),
        "fd_real": frechet_distance(feature, real_a, real_b),
    }
    if run.flow.num_classes:
        with torch.no_grad():
            pred = classifier(fake).argmax(1)
        result["class_accuracy"] = float((pred == labels.cpu()).float().mean())
    else:
        result["class_accuracy"] = None
    result.update(
        classifier_accuracy=clf_acc,
        nfe=used_nfe,
        seconds_per_sample=seconds / num,
        num=num,
        method=getattr(run.flow, "method_name", None)
        or (method if cfg.flow == "continuous" else "discrete-euler"),
        cfg_scale=cfg_scale,
        step=run.step,
    )
    if inception_weights is not None:
        result["fid"] = inception_fid(inception_weights, real_a, fake)
    return result


def evaluate_seeds(
    run_dir: str | Path, *, seeds: int, seed: int = 0, log=print, **kwargs
) -> dict[str, Any]:
    """:func:`evaluate` at ``seeds`` consecutive seeds ``seed, seed + 1, ...``, summarised.

    At 200 samples one seed's ``fd`` is a noisy figure: on the digits demo model it ranges from
    0.82 to 1.66 over ten seeds (each seed draws other samples and other held-out subsets), more
    than most differences between models. With ``seeds > 1`` the result's ``fd``, ``fd_real``,
    ``class_accuracy`` and ``seconds_per_sample`` are means over the seeds; ``fd_sd`` and
    ``fd_real_sd`` are their standard deviations, ``fd_ratio`` the mean of ``fd / fd_real`` per
    seed, ``seeds`` the seeds and ``per_seed`` each seed's ``fd``, ``fd_real`` and
    ``class_accuracy``. Compare two models at the same seeds (the held-out subsets are then the
    same). ``seeds == 1`` returns :func:`evaluate`'s result unchanged.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be an integer >= 1, got {seeds!r}")
    rows = []
    for i in range(seeds):
        rows.append(
            evaluate(run_dir, seed=seed + i, log=log if i == 0 else (lambda *a: None), **kwargs)
        )
    if seeds == 1:
        return rows[0]

    def mean(key: str) -> float | None:
        values = [r[key] for r in rows]
        return None if values[0] is None else statistics.fmean(values)

    result = dict(rows[0])
    for key in ("fd", "fd_real", "class_accuracy", "seconds_per_sample", "fid"):
        if key in result:
            result[key] = mean(key)
    result.update(
        fd_sd=statistics.stdev(r["fd"] for r in rows),
        fd_real_sd=statistics.stdev(r["fd_real"] for r in rows),
        fd_ratio=statistics.fmean(r["fd"] / r["fd_real"] for r in rows),
        seeds=[seed + i for i in range(seeds)],
        per_seed=[{k: r[k] for k in ("fd", "fd_real", "class_accuracy")} for r in rows],
    )
    return result
