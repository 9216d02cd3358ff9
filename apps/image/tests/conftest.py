"""Shared helpers of the fm-image tests: tiny runs that finish in seconds on a loaded CPU."""

from __future__ import annotations

import pytest
import torch

from fm_image.config import TrainConfig


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on a busy 2-core machine spin against each other (5x slower matmuls, measured).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: A few-step digits run: batch 32, no warmup, a constant rate of 1e-3 (so a run cut in two
#: parts resumes to the same weights), frequent logs, no progress bar.
TINY = {
        "steps": 6, "batch_size": 32, "warmup_steps": 0, "lr": 1e-3, "decay_steps": 0, "log_every": 2,
        "ckpt_every": 3, "progress": False, "sample_nfe": 2, "ema_decay": 0.9,
}  # fmt: skip


@pytest.fixture
def tiny_config():
    """``tiny_config(out, **overrides)`` -> a ``TrainConfig`` of a few-step digits run."""

    def make(out, **overrides) -> TrainConfig:
        return TrainConfig(**{**TINY, "out": str(out), **overrides})

    return make
