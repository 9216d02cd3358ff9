"""Data order as a function of (seed, step): same global batches for any process count."""

from __future__ import annotations

import pytest

from fm_image.data import StepBatchSampler


def test_global_batch_does_not_depend_on_world_size():
    one = list(StepBatchSampler(50, 8, seed=3, start_step=0, total_steps=20))
    for world in (2, 4):
        ranks = [
            list(
                StepBatchSampler(
                    50, 8, seed=3, start_step=0, total_steps=20, rank=r, world_size=world
                )
            )
            for r in range(world)
        ]
        joined = [[i for r in range(world) for i in ranks[r][s]] for s in range(20)]
        assert joined == one


def test_resume_starts_at_the_step_and_epochs_are_permutations():
    full = list(StepBatchSampler(50, 8, seed=3, start_step=0, total_steps=20))
    assert list(StepBatchSampler(50, 8, seed=3, start_step=7, total_steps=20)) == full[7:]
    flat = [i for batch in full for i in batch]
    assert sorted(flat[:50]) == list(range(50)) and sorted(flat[50:100]) == list(range(50))
    assert flat[:50] != flat[50:100]
    assert list(StepBatchSampler(50, 8, seed=4, start_step=0, total_steps=20)) != full


def test_batch_must_split_over_processes():
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        StepBatchSampler(50, 9, seed=0, start_step=0, total_steps=1, world_size=2)
