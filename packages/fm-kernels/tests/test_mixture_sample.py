from __future__ import annotations

import pytest
import torch

import fm_kernels
from fm_kernels.testing import DEVICE


def _tokens(b, length, dtype=torch.long):
    x_0 = torch.zeros(b, length, dtype=dtype, device=DEVICE)
    return x_0, torch.ones(b, length, dtype=dtype, device=DEVICE)


@pytest.mark.parametrize("kappa_dtype", [torch.float32, torch.float64])
def test_frequencies_match_kappa(kappa_dtype):
    # 16 rows x 2000 tokens = 32000 draws in 32 programs of 1024.
    x_0, x_1 = _tokens(16, 2000)
    kappa = torch.linspace(0, 1, 16, dtype=kappa_dtype, device=DEVICE)
    x_t = fm_kernels.mixture_sample(x_0, x_1, kappa, seed=7)
    freq = x_t.double().mean(dim=1)
    # 5 binomial standard deviations at n = 2000 (<= 0.056); kappa = 0 and 1 are exact.
    sd = (kappa.double() * (1 - kappa.double()) / 2000).sqrt()
    assert ((freq - kappa.double().cpu()).abs() <= 5 * sd + 1e-12).all()
    assert freq[0] == 0 and freq[-1] == 1


def test_deterministic_and_seed_dependent():
    x_0 = torch.randint(0, 50, (6, 3, 17), device=DEVICE)
    x_1 = torch.randint(50, 100, (6, 3, 17), device=DEVICE)
    kappa = torch.full((6,), 0.5, device=DEVICE)
    a = fm_kernels.mixture_sample(x_0, x_1, kappa, seed=1, block_size=64)
    assert torch.equal(a, fm_kernels.mixture_sample(x_0, x_1, kappa, seed=1, block_size=64))
    assert not torch.equal(a, fm_kernels.mixture_sample(x_0, x_1, kappa, seed=2, block_size=64))
    # every token is one of its two endpoints
    assert ((a == x_0) | (a == x_1)).all()


def test_dtypes_noncontiguous_empty():
    x_0, x_1 = _tokens(4, 6, dtype=torch.int32)
    out = fm_kernels.mixture_sample(x_0.T, x_1.T, torch.ones(6, device=DEVICE), seed=0)
    assert out.dtype == torch.int32 and torch.equal(out, x_1.T)
    with pytest.raises(ValueError, match="x_0 must hold at least one row"):
        fm_kernels.mixture_sample(x_0[:0], x_1[:0], torch.ones(0, device=DEVICE), seed=0)


def test_bad_arguments():
    x_0, x_1 = _tokens(4, 6)
    kappa = torch.rand(4, device=DEVICE)
    with pytest.raises(TypeError, match="x_0"):
        fm_kernels.mixture_sample(x_0.float(), x_1, kappa, seed=0)
    with pytest.raises(ValueError, match="kappa_t"):
        fm_kernels.mixture_sample(x_0, x_1, kappa[:2], seed=0)
    with pytest.raises(ValueError, match="seed"):
        fm_kernels.mixture_sample(x_0, x_1, kappa, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        fm_kernels.mixture_sample(x_0, x_1, kappa, seed=1.5)
