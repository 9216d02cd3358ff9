"""Fixtures shared by the fm-riemann tests."""

from __future__ import annotations

import pytest
import torch

from fm_riemann.testing import MANIFOLDS


@pytest.fixture(params=sorted(MANIFOLDS))
def manifold(request):
    return MANIFOLDS[request.param]()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
