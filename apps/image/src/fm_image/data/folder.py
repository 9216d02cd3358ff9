"""Any ``ImageFolder``-style tree (one subfolder per class), decoded lazily with Pillow.

Images are decoded in ``__getitem__``, so a ``DataLoader`` with ``num_workers > 0`` decodes them
in worker processes; nothing but the file list is held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fm_image.data.dataset import DataError, ImageSplits, stratified_split

__all__ = ["EXTENSIONS", "FolderImages", "load_folder_splits"]

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
HELDOUT_FRACTION = 0.1
SPLIT_SEED = 20231106


class FolderImages(torch.utils.data.Dataset):
    """Image files with labels, decoded by Pillow to ``mode`` and resized to ``size``.

    Args:
        files: image paths.
        labels: int64 array ``[N]``.
        mode: Pillow mode, ``"L"`` (1 channel) or ``"RGB"`` (3 channels).
        size: ``(H, W)`` every image is resized to (bicubic) when it differs.
        num_classes: number of classes.
        discrete: serve long tokens (256 levels) instead of floats in $[-1, 1]$.
    """

    levels = 256

    def __init__(self, files, labels, *, mode, size, num_classes, discrete=False) -> None:
        self.files = [Path(f) for f in files]
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.mode = mode
        self.size = tuple(size)
        self.num_classes = int(num_classes)
        self.discrete = discrete

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1 if self.mode == "L" else 3, *self.size)  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self, i: int) -> Tensor:
        from PIL import Image

        try:
            with Image.open(self.files[i]) as im:
                im = im.convert(self.mode)
                if im.size != (self.size[1], self.size[0]):
                    im = im.resize((self.size[1], self.size[0]), Image.Resampling.BICUBIC)
                arr = np.array(im, dtype=np.uint8)
        except OSError as e:
            raise DataError(f"cannot decode image {self.files[i]}: {e}") from None
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr))

    def to_model(self, pixels: Tensor) -> Tensor:
        if self.discrete:
            return pixels.long()
        return pixels.float() * (2.0 / 255.0) - 1.0

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.to_model(self._decode(i)), self.labels[i]

    def uint8(self) -> Tensor:
        """Every image decoded, uint8 ``[N, C, H, W]``."""
        return torch.stack([self._decode(i) for i in range(len(self))])


def load_folder_splits(
    root: str | Path, *, discrete: bool = False, image_size: int | None = None
) -> ImageSplits:
    """Scan ``root/<class>/<image>`` and split each class deterministically (10 % held out).

    The channel count follows the images (all grayscale -> 1 channel, else RGB) and the size is
    ``image_size`` or the first image's; every header is opened here, so a corrupt file fails
    before training starts.

    Args:
        root: the tree's root; each subfolder is a class (sorted by name).
        discrete: serve long tokens instead of floats.
        image_size: resize to ``image_size x image_size`` (default: the first image's size).

    Returns:
        ``ImageSplits`` of ``FolderImages``.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (expected one subfolder per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files, labels = [], []
    for c, name in enumerate(classes):
        found = sorted(
            p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
        )
        files += found
        labels += [c] * len(found)
    if len(classes) < 1 or not files:
        raise DataError(
            f"image folder {root} has no class subfolders with images "
            f"(expected {root}/<class>/<image>{{{','.join(EXTENSIONS[:3])},...}})"
        )
    modes, sizes = set(), []
    for f in files:
        try:
            with Image.open(f) as im:
                modes.add(im.mode)
                sizes.append(im.size)
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"corrupt image {f} in image folder {root}: {e}") from None
    mode = "L" if modes <= {"L", "1", "I;16", "I"} else "RGB"
    size = (image_size, image_size) if image_size else (sizes[0][1], sizes[0][0])
    labels_np = np.asarray(labels, dtype=np.int64)
    train_idx, held_idx = stratified_split(labels_np, HELDOUT_FRACTION, SPLIT_SEED)
    kw = {"mode": mode, "size": size, "num_classes": len(classes), "discrete": discrete}
    return ImageSplits(
        name="folder",
        train=FolderImages([files[i] for i in train_idx], labels_np[train_idx], **kw),
        heldout=FolderImages([files[i] for i in held_idx], labels_np[held_idx], **kw),
        class_names=classes,
    )
