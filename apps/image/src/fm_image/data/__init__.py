"""Image data sets, never downloaded: digits (in scikit-learn), IDX, CIFAR-10 batches, image folders."""

from __future__ import annotations

from pathlib import Path

import torch

from fm_image.data.cifar import load_cifar10_splits
from fm_image.data.dataset import DataError, ImageArrays, ImageSplits, levels_to_uint8
from fm_image.data.digits import load_digits_splits
from fm_image.data.folder import FolderImages, load_folder_splits
from fm_image.data.idx import load_idx_splits, read_idx
from fm_image.data.sampler import StepBatchSampler, step_seed

__all__ = [
    "DATASETS",
    "DataError",
    "FolderImages",
    "ImageArrays",
    "ImageSplits",
    "StepBatchSampler",
    "levels_to_uint8",
    "load_splits",
    "make_loader",
    "read_idx",
    "step_seed",
]

#: ``--data`` choices; all but ``digits`` read ``--data-dir``.
DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "folder")


def load_splits(
    name: str,
    data_dir: str | Path | None = None,
    *,
    discrete: bool = False,
    image_size: int | None = None,
) -> ImageSplits:
    """Load a data set's train and held-out splits.

    Args:
        name: one of ``DATASETS``.
        data_dir: the local folder for every data set but ``digits``.
        discrete: serve long tokens instead of floats in $[-1, 1]$.
        image_size: resize ``folder`` images to this square size.

    Raises:
        ValueError: an unknown name; ``DataError`` (a ``ValueError``) for a missing or corrupt folder.
    """
    if name not in DATASETS:
        raise ValueError(f"data must be one of {', '.join(DATASETS)}; got {name!r}")
    if name == "digits":
        return load_digits_splits(discrete=discrete)
    if data_dir is None:
        raise ValueError(f"--data {name} needs --data-dir (a local folder; nothing is downloaded)")
    if name in ("mnist", "fashion-mnist"):
        return load_idx_splits(data_dir, discrete=discrete, name=name)
    if name == "cifar10":
        return load_cifar10_splits(data_dir, discrete=discrete)
    return load_folder_splits(data_dir, discrete=discrete, image_size=image_size)


def _identity(batch):
    return batch


def make_loader(
    dataset: ImageArrays | FolderImages,
    sampler: StepBatchSampler,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over ``sampler``'s per-step index lists.

    In-memory arrays serve a whole batch per ``__getitems__`` (no collation); image folders are
    decoded per item in ``num_workers`` worker processes and collated.
    """
    batched = isinstance(dataset, ImageArrays)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=_identity if batched else None,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
