"""The judge: a small CNN trained on the training split, cached in the run directory.

It never sees generated images in training, so its accuracy on class-conditional samples and the
Fréchet distance in its feature space measure the generator from outside.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from fm_core.training import atomic_path, write_json_atomic
from fm_image.data import ImageSplits

__all__ = ["ClassifierFeatures", "SmallCNN", "load_or_train_classifier"]


class SmallCNN(nn.Module):
    """Three convolutions, global average pooling, a linear head; takes uint8 ``[B, C, H, W]``.

    Args:
        channels: image channels.
        num_classes: classes.
        width: channels of the last convolution = feature dimension.
    """

    def __init__(self, channels: int, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.SiLU(),
            nn.Conv2d(64, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(width, num_classes)
        self.num_features = width

    def features(self, images: Tensor) -> Tensor:
        """uint8 ``[B, C, H, W]`` -> float features ``[B, width]``."""
        return self.body(images.float() * (2.0 / 255.0) - 1.0)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


class ClassifierFeatures(nn.Module):
    """The classifier's penultimate features, as torchmetrics' custom FID ``feature`` module."""

    def __init__(self, classifier: SmallCNN) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier.features(images)


def _accuracy(model: SmallCNN, images: Tensor, labels: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x).argmax(1) for x in images.split(512)])
    return float((pred == labels).float().mean())


def train_classifier(
    train_images: Tensor, train_labels: Tensor, num_classes: int, *, steps: int, seed: int
) -> SmallCNN:
    """Train ``SmallCNN`` on uint8 images ``[N, C, H, W]`` with random 1-pixel shifts."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SmallCNN(train_images.shape[1], num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    n = train_images.shape[0]
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (min(128, n),), generator=g)
        x = train_images[idx]
        dy, dx = torch.randint(-1, 2, (2,), generator=g).tolist()
        x = torch.roll(F.pad(x, (1, 1, 1, 1)), shifts=(dy, dx), dims=(2, 3))[..., 1:-1, 1:-1]
        loss = F.cross_entropy(model(x), train_labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def load_or_train_classifier(
    run_dir: str | Path, splits: ImageSplits, *, steps: int = 800, seed: int = 0
) -> tuple[SmallCNN, float]:
    """The run's cached classifier (``RUN_DIR/classifier/``), trained first if missing.

    Returns:
        The classifier (eval mode) and its accuracy on the held-out split.
    """
    folder = Path(run_dir) / "classifier"
    weights, meta = folder / "model.safetensors", folder / "info.json"
    c = splits.shape[0]
    model = SmallCNN(c, splits.num_classes)
    if weights.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("steps") == steps and info.get("seed") == seed:
            load_model(model, str(weights))
            return model.eval(), float(info["heldout_accuracy"])
    model = train_classifier(
        splits.train.uint8(), splits.train.labels, splits.num_classes, steps=steps, seed=seed
    )
    acc = _accuracy(model, splits.heldout.uint8(), splits.heldout.labels)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_model(model, str(tmp))
    write_json_atomic(meta, {"steps": steps, "seed": seed, "heldout_accuracy": acc})
    return model, acc
