"""Fixtures shared by fm-discrete tests: a factorised target over a small vocabulary."""

from __future__ import annotations

import pytest
import torch

from fm_core.path.scheduler.convex import CondOTScheduler
from fm_discrete import MixtureDiscreteProbPath

DATA_VOCAB = 5
MASK = DATA_VOCAB  # the mask id sits after the data vocabulary
VOCAB = DATA_VOCAB + 1
LENGTH = 3


@pytest.fixture
def path():
    return MixtureDiscreteProbPath(CondOTScheduler())


@pytest.fixture
def target():
    """q[i, v]: per-position distributions over the data tokens (zero on the mask id), [L, V]."""
    g = torch.Generator().manual_seed(0)
    q = torch.rand(LENGTH, DATA_VOCAB, generator=g, dtype=torch.float64) + 0.1
    q = q / q.sum(-1, keepdim=True)
    return torch.cat([q, torch.zeros(LENGTH, 1, dtype=torch.float64)], dim=-1)
