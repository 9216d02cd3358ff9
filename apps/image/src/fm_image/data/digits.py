"""scikit-learn's 8x8 handwritten digits (1 797 images, 17 intensity levels), shipped with sklearn."""

from __future__ import annotations

import numpy as np

from fm_image.data.dataset import ImageArrays, ImageSplits, stratified_split

__all__ = ["HELDOUT_FRACTION", "SPLIT_SEED", "load_digits_splits"]

#: A quarter of each class is held out: 450 images, enough for two disjoint sets of 200 (fd_real).
HELDOUT_FRACTION = 0.25
#: The split is part of the data set's definition, not of a run's seed.
SPLIT_SEED = 20231106


def load_digits_splits(*, discrete: bool = False) -> ImageSplits:
    """The digits data set, split deterministically per class into train (1 347) and held-out (450).

    Pixels are the data set's integer levels 0..16 (``levels=17``); a continuous flow sees them
    scaled to $[-1, 1]$, a discrete flow as 17 tokens.

    Args:
        discrete: serve long tokens instead of floats.

    Returns:
        ``ImageSplits`` of images ``[1, 8, 8]``, 10 classes.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.images, dtype=np.uint8)[:, None]  # [N, 1, 8, 8], values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, held = stratified_split(labels, HELDOUT_FRACTION, SPLIT_SEED)
    kw = {"levels": 17, "num_classes": 10, "discrete": discrete}
    return ImageSplits(
        name="digits",
        train=ImageArrays(pixels[train], labels[train], **kw),
        heldout=ImageArrays(pixels[held], labels[held], **kw),
        class_names=[str(i) for i in range(10)],
    )
