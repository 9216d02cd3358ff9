"""TimePairSampler: ordering, the equal fraction, the MeanFlow conversion, reproducibility."""

from __future__ import annotations

import pytest
import torch

from fm_core.time_sampling import LogitNormalTimeSampler, TimePairSampler, UniformTimeSampler


def _draw(sampler, n=100_000, seed=0):
    return sampler(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_pairs_are_ordered_and_the_equal_fraction_holds():
    t, r = _draw(TimePairSampler(equal_fraction=0.25))
    assert t.shape == r.shape == (100_000,)
    assert bool((t <= r).all()) and bool((t >= 0).all()) and bool((r <= 1).all())
    assert abs((t == r).double().mean().item() - 0.25) < 0.01


def test_unequal_pairs_are_min_and_max_of_two_uniforms():
    """For two uniforms, min has mean 1/3 and max 2/3."""
    t, r = _draw(TimePairSampler(UniformTimeSampler(), equal_fraction=0.0))
    assert abs(t.mean().item() - 1 / 3) < 0.005 and abs(r.mean().item() - 2 / 3) < 0.005


def test_from_meanflow_mirrors_the_papers_time():
    """The papers' logit-normal(-0.4, 1) in their time (data at 0) is ours with loc +0.4: the
    pooled (t, r) of unequal pairs are the draws themselves, with median sigmoid(0.4)."""
    sampler = TimePairSampler.from_meanflow(-0.4, 1.0, equal_fraction=0.0)
    t, r = _draw(sampler)
    median = torch.sigmoid(torch.tensor(0.4, dtype=torch.float64))
    assert abs(torch.cat([t, r]).median().item() - median.item()) < 0.005
    assert sampler.sampler.loc == 0.4
    t, r = _draw(TimePairSampler.from_meanflow(equal_fraction=1.0), n=64)
    torch.testing.assert_close(t, r)


def test_reproducible_and_dtype():
    a = _draw(TimePairSampler(), n=64, seed=3)
    b = _draw(TimePairSampler(), n=64, seed=3)
    torch.testing.assert_close(a, b)
    t, _ = TimePairSampler()(4)
    assert t.dtype == torch.get_default_dtype()


def test_bad_input():
    with pytest.raises(ValueError, match="equal_fraction"):
        TimePairSampler(equal_fraction=1.5)
    with pytest.raises(TypeError, match="sampler"):
        TimePairSampler(sampler=lambda n: torch.rand(n))
    with pytest.raises(ValueError, match="batch_size"):
        TimePairSampler()(-1)
    assert isinstance(TimePairSampler().sampler, LogitNormalTimeSampler)
