import pytest
import torch

from fm_core.guidance import drop_labels

NUM_CLASSES = 5


def test_drop_labels_rate_and_reproducibility():
    y = torch.randint(0, NUM_CLASSES, (20_000,), generator=torch.Generator().manual_seed(0))
    out, mask = drop_labels(
        y, 0.2, NUM_CLASSES, generator=torch.Generator().manual_seed(1), return_mask=True
    )
    rate = mask.float().mean().item()
    assert abs(rate - 0.2) < 4 * (0.2 * 0.8 / 20_000) ** 0.5
    assert (out[mask] == NUM_CLASSES).all() and torch.equal(out[~mask], y[~mask])
    again = drop_labels(y, 0.2, NUM_CLASSES, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    assert torch.equal(drop_labels(y, 0.0, NUM_CLASSES), y)
    assert (drop_labels(y, 1.0, NUM_CLASSES) == NUM_CLASSES).all()


def test_drop_labels_embeddings():
    y = torch.randn(64, 4)
    out, mask = drop_labels(y, 0.5, torch.zeros(4), return_mask=True)
    assert (out[mask] == 0).all() and torch.equal(out[~mask], y[~mask])


def test_drop_labels_bad_arguments():
    y = torch.arange(4)
    with pytest.raises(ValueError, match="p must"):
        drop_labels(y, 1.5, 0)
    with pytest.raises(ValueError, match="labels"):
        drop_labels(torch.tensor(3), 0.1, 0)
    with pytest.raises(TypeError, match="labels"):
        drop_labels([1, 2], 0.1, 0)
    with pytest.raises(TypeError, match="null_label"):
        drop_labels(y, 0.1, "null")
    with pytest.raises(TypeError, match="generator"):
        drop_labels(y, 0.1, 0, generator=1)
