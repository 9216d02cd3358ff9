"""CIFAR-10 in its "python version" batches (``data_batch_1..5``, ``test_batch``) from a local folder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from fm_image.data.dataset import DataError, ImageArrays, ImageSplits

__all__ = ["CIFAR10_CLASSES", "load_cifar10_splits"]

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]  # fmt: skip
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and nothing else: a batch file cannot run code."""

    ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except FileNotFoundError:
        raise DataError(f"CIFAR-10 batch {path} is missing") from None
    except Exception as e:  # any unpickling failure means a corrupt file
        raise DataError(
            f"{path} is not a CIFAR-10 python batch (a pickled dict with b'data' uint8 [N, 3072] "
            f"and b'labels'): {type(e).__name__}: {e}"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DataError(
            f"{path}: expected b'data' of shape [N, 3072] and N labels, got {data.shape} and "
            f"{labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10_splits(folder: str | Path, *, discrete: bool = False) -> ImageSplits:
    """CIFAR-10 from ``folder`` (the ``cifar-10-batches-py`` directory or its parent).

    Args:
        folder: directory with ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``.
        discrete: serve long tokens (256 levels) instead of floats in $[-1, 1]$.

    Returns:
        ``ImageSplits`` of images ``[3, 32, 32]``, 10 classes; ``test_batch`` is held out.
    """
    folder = Path(folder)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if not folder.is_dir():
        raise DataError(
            f"CIFAR-10 folder {folder} does not exist (expected data_batch_1..5 and test_batch)"
        )
    train = [_read_batch(folder / name) for name in TRAIN_BATCHES]
    test = _read_batch(folder / TEST_BATCH)
    kw = {"levels": 256, "num_classes": 10, "discrete": discrete}
    return ImageSplits(
        name="cifar10",
        train=ImageArrays(
            np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]), **kw
        ),
        heldout=ImageArrays(*test, **kw),
        class_names=list(CIFAR10_CLASSES),
    )
