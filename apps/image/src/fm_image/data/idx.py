"""MNIST / Fashion-MNIST in their IDX format (raw or ``.gz``) from a local folder."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from fm_image.data.dataset import DataError, ImageArrays, ImageSplits

__all__ = ["IDX_FILES", "load_idx_splits", "read_idx"]

#: split -> (images file, labels file), without the optional ``.gz``.
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "heldout": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]  # fmt: skip


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read one uint8 IDX file (``magic = 0x0000 08 ndim``), gzip-compressed or not.

    Args:
        path: the file.
        ndim: expected number of dimensions (3 for images, 1 for labels).

    Returns:
        uint8 array of the file's shape.

    Raises:
        DataError: the file cannot be read or is not a uint8 IDX file of ``ndim`` dimensions.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 + 4 * ndim or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DataError(
            f"{path} is not a uint8 IDX file with {ndim} dimension(s) (expected magic "
            f"00 00 08 {ndim:02x}, got {raw[:4].hex(' ')})"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        raise DataError(
            f"{path} is truncated or padded: header says shape {shape} ({int(np.prod(shape))} "
            f"bytes), body has {len(body)} bytes"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"IDX data folder {folder} has no {stem} (or {stem}.gz)")


def load_idx_splits(
    folder: str | Path, *, discrete: bool = False, name: str = "idx"
) -> ImageSplits:
    """MNIST-style IDX files: ``train-*`` for training, ``t10k-*`` held out.

    Args:
        folder: directory holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
            ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``.
        discrete: serve long tokens (256 levels) instead of floats in $[-1, 1]$.
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"idx"`` (class names only).

    Returns:
        ``ImageSplits`` of images ``[1, H, W]``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"IDX data folder {folder} does not exist (expected MNIST-style IDX files)")
    splits = {}
    for split, (img_stem, lab_stem) in IDX_FILES.items():
        images = read_idx(_find(folder, img_stem), 3)
        labels = read_idx(_find(folder, lab_stem), 1).astype(np.int64)
        if labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{folder}: {img_stem} has {images.shape[0]} images but {lab_stem} has "
                f"{labels.shape[0]} labels"
            )
        splits[split] = (images[:, None], labels)
    num_classes = int(max(s[1].max() for s in splits.values())) + 1
    names = FASHION_CLASSES if name == "fashion-mnist" else [str(i) for i in range(num_classes)]
    kw = {"levels": 256, "num_classes": num_classes, "discrete": discrete}
    return ImageSplits(
        name=name,
        train=ImageArrays(*splits["train"], **kw),
        heldout=ImageArrays(*splits["heldout"], **kw),
        class_names=names[:num_classes],
    )
