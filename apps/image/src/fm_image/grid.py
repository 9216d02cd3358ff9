"""Image grids as PNG (Pillow) and their ``.npz`` twins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fm_core.training import atomic_path

__all__ = ["default_zoom", "grid_array", "save_grid", "save_samples"]


def default_zoom(height: int) -> int:
    """Nearest-neighbour enlargement of small images in PNGs (8x8 digits -> 4x)."""
    return max(1, 32 // height)


def grid_array(images: Tensor, nrow: int, *, pad: int = 1, zoom: int = 1) -> np.ndarray:
    """Tile uint8 images ``[K, C, H, W]`` into ``[rows * (zoom H + pad) + pad, ..., C]``.

    Each pixel becomes a ``zoom x zoom`` block (nearest neighbour); tiles are separated by
    ``pad`` pixels of value 255, in row-major order, ``nrow`` images per row.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8 [K, C, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    k, c, h, w = images.shape
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    if zoom > 1:
        arr = arr.repeat(zoom, axis=1).repeat(zoom, axis=2)
    h, w = h * zoom, w * zoom
    cols = max(1, min(nrow, k))
    rows = max(1, -(-k // cols))
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(k):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y : y + h, x : x + w] = arr[i]
    return out


def save_grid(images: Tensor, path: str | Path, nrow: int, *, zoom: int | None = None) -> Path:
    """Write a PNG grid of uint8 images ``[K, C, H, W]`` atomically; returns the path."""
    from PIL import Image

    path = Path(path)
    zoom = default_zoom(images.shape[2]) if zoom is None else zoom
    arr = grid_array(images, nrow, zoom=zoom)
    img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def save_samples(
    images: Tensor, labels: Tensor, png: str | Path, nrow: int, *, zoom: int | None = None
) -> tuple[Path, Path]:
    """The PNG grid and, beside it, ``.npz`` with ``images`` uint8 ``[K, H, W, C]`` and ``labels``
    int64 ``[K]`` (-1: unconditional). The PNG's tiles are exactly these pixels (each repeated
    ``zoom x zoom`` times)."""
    png = Path(png)
    save_grid(images, png, nrow, zoom=zoom)
    npz = png.with_suffix(".npz")
    with atomic_path(npz) as tmp:
        np.savez(
            tmp,
            images=images.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8),
            labels=labels.cpu().numpy().astype(np.int64),
        )
    return png, npz
