import pytest
import torch

from fm_core.ext import gumbel_argmax
from fm_core.utils import categorical


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frequencies_match_probabilities(dtype):
    probs = torch.tensor([0.05, 0.15, 0.3, 0.5])
    n = 200_000
    draws = categorical(probs.expand(n, 4), dtype=dtype, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4) / n
    # 5 standard errors of a binomial proportion at n = 200 000 is at most 0.0056.
    torch.testing.assert_close(freq, probs, atol=0.0056, rtol=0)


def test_unnormalised_rows_and_zero_probabilities():
    probs = torch.tensor([[0.0, 2.0, 0.0], [3.0, 0.0, 1.0]]).repeat(5000, 1)
    draws = categorical(probs, generator=torch.Generator().manual_seed(1)).view(5000, 2)
    assert (draws[:, 0] == 1).all()
    assert set(draws[:, 1].tolist()) == {0, 2}
    assert abs((draws[:, 1] == 0).float().mean().item() - 0.75) < 0.03


def test_generator_makes_draws_reproducible_and_shape_is_batch():
    probs = torch.rand(3, 7, 11)
    a = categorical(probs, generator=torch.Generator().manual_seed(5))
    b = categorical(probs, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 7) and a.dtype == torch.long and torch.equal(a, b)


def test_bad_input():
    with pytest.raises(TypeError, match="probs must be a floating-point tensor"):
        categorical(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"probs must have shape \[..., K\] with K >= 1"):
        categorical(torch.ones(2, 0))


@pytest.mark.parametrize("logits", [True, False])
def test_gumbel_argmax_frequencies_and_chunks(logits):
    """The one sampler behind categorical and fm-discrete's Euler step, in chunks of 250 rows."""
    p = torch.tensor([0.1, 0.0, 0.6, 0.3])
    scores = (p.log() if logits else p).expand(40_000, 4)
    g = torch.Generator().manual_seed(0)
    x = gumbel_argmax(scores, scores_are_logits=logits, generator=g, chunk_elements=1000)
    freq = torch.bincount(x, minlength=4).double() / x.numel()
    assert freq[1] == 0
    torch.testing.assert_close(freq, p.double(), atol=0.01, rtol=0)


def test_gumbel_argmax_rows_draw_only_those_rows():
    scores = torch.eye(5)[[3, 1, 4, 0, 2]] * 50.0  # row i draws its one-hot index almost surely
    rows = torch.tensor([4, 0, 2])
    torch.testing.assert_close(gumbel_argmax(scores, rows=rows), torch.tensor([2, 3, 4]))
