"""The in-memory image data set every loader returns, and the error a bad data folder raises."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["DataError", "ImageArrays", "ImageSplits"]


class DataError(ValueError):
    """A missing or corrupt data folder or file; the message names the path and what was expected."""


class ImageArrays(torch.utils.data.Dataset):
    """Images as integer intensity levels in memory, served as whole batches.

    ``levels`` is the number of intensity levels (17 for scikit-learn's digits, 256 for 8-bit
    images): pixel ``v`` maps to ``2 v / (levels - 1) - 1`` in $[-1, 1]$ for continuous flows and
    stays the token ``v`` for discrete ones. ``__getitems__`` returns a whole batch at once, so a
    ``DataLoader`` (with ``collate_fn=identity``) slices memory instead of collating single items.

    Args:
        pixels: uint8 array ``[N, C, H, W]`` with values in ``[0, levels)``.
        labels: int64 array ``[N]``, class indices in ``[0, num_classes)``.
        levels: number of intensity levels.
        num_classes: number of classes.
        discrete: serve long tokens ``[B, C, H, W]`` instead of floats in $[-1, 1]$.
    """

    def __init__(
        self,
        pixels: np.ndarray,
        labels: np.ndarray,
        *,
        levels: int,
        num_classes: int,
        discrete: bool = False,
    ) -> None:
        if pixels.ndim != 4:
            raise ValueError(f"pixels must have shape [N, C, H, W], got {pixels.shape}")
        if labels.shape != (pixels.shape[0],):
            raise ValueError(
                f"labels must have shape [N] = [{pixels.shape[0]}], got {labels.shape}"
            )
        self.pixels = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"]))
        self.labels = torch.from_numpy(np.require(labels, np.int64, ["C", "W"]))
        self.levels = int(levels)
        self.num_classes = int(num_classes)
        self.discrete = discrete

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.pixels.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def to_model(self, pixels: Tensor) -> Tensor:
        """Integer levels ``[B, C, H, W]`` -> long tokens, or floats in $[-1, 1]$."""
        if self.discrete:
            return pixels.long()
        return pixels.float() * (2.0 / (self.levels - 1)) - 1.0

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.to_model(self.pixels[index]), self.labels[index]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.to_model(self.pixels[i : i + 1])[0], self.labels[i]

    def uint8(self) -> Tensor:
        """All images as uint8 ``[N, C, H, W]`` in 0..255 (levels rescaled), for evaluation."""
        return levels_to_uint8(self.pixels, self.levels)


def levels_to_uint8(pixels: Tensor, levels: int) -> Tensor:
    """Integer levels in ``[0, levels)`` -> uint8 in 0..255 (identity for 256 levels)."""
    if levels == 256:
        return pixels.to(torch.uint8)
    return (pixels.double() * (255.0 / (levels - 1))).round().to(torch.uint8)


@dataclass
class ImageSplits:
    """A data set's training and held-out splits (the held-out one is never trained on).

    Attributes:
        name: the data set's name, e.g. ``"digits"``.
        train: the training split.
        heldout: the held-out split (evaluation and the classifier's accuracy).
        class_names: one name per class.
    """

    name: str
    train: ImageArrays
    heldout: ImageArrays
    class_names: list[str]

    @property
    def levels(self) -> int:
        return self.train.levels

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.train.shape


def stratified_split(
    labels: np.ndarray, heldout_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-class split: indices of train and held-out, each sorted.

    The same labels, fraction and seed give the same split on every machine (numpy's PCG64).
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    train, heldout = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        n_held = max(1, round(idx.size * heldout_fraction)) if idx.size >= 2 else 0
        heldout.append(idx[:n_held])
        train.append(idx[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(heldout))
