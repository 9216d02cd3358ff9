import pytest
import torch

from fm_discrete import mask_like, mask_source_p, sample_source, uniform_source_p


def test_sources():
    assert mask_source_p(4, 3).tolist() == [0, 0, 0, 1]
    torch.testing.assert_close(uniform_source_p(4).sum(), torch.tensor(1.0))
    g = torch.Generator().manual_seed(0)
    x = sample_source(torch.tensor([0.2, 0.8]), (20_000,), generator=g)
    assert abs(x.double().mean().item() - 0.8) < 0.02
    assert mask_like(torch.tensor([[1, 2]]), 5).tolist() == [[5, 5]]


def test_bad_sources():
    with pytest.raises(ValueError, match="mask_token=2 lies inside the data vocabulary"):
        mask_source_p(6, 2, data_vocabulary_size=5)
    with pytest.raises(ValueError, match="mask_token must be an id of the model vocabulary"):
        mask_source_p(6, 6)
    with pytest.raises(ValueError, match="p must sum to one"):
        sample_source(torch.tensor([0.2, 0.7]), (3,))
    with pytest.raises(ValueError, match="p must hold finite, non-negative"):
        sample_source(torch.tensor([-0.2, 1.2]), (3,))
    with pytest.raises(ValueError, match="x_1 already contains the mask token 2"):
        mask_like(torch.tensor([[1, 2]]), 2)
    with pytest.raises(ValueError, match="x_1 holds token id 7 outside the vocabulary"):
        mask_like(torch.tensor([[1, 7]]), 5, data_vocabulary_size=5)
