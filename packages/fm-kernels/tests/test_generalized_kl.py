from __future__ import annotations

import pytest
import torch

import fm_kernels
from fm_kernels import reference
from fm_kernels.testing import (
    DEVICE,
    assert_close_dtype,
    assert_three_way,
    storage_atol,
)


def _data(n, v, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g, dtype=torch.float64) * 2).to(DEVICE, dtype)
    x_1 = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    x_t = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    x_t[: n // 3] = x_1[: n // 3]  # a third of the tokens already at their target (δ = 1)
    jump = torch.rand(n, generator=g, dtype=torch.float64).to(DEVICE, dtype) * 3
    return logits, x_1, x_t, jump


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_reference(dtype, reduction):
    # V = 300 with 128-logit chunks: 3 chunks, the last 44/128 full.
    logits, x_1, x_t, jump = _data(9, 300, dtype)
    l1 = logits.clone().requires_grad_(True)
    l2 = logits.clone().requires_grad_(True)
    loss = fm_kernels.generalized_kl(l1, x_1, x_t, jump, reduction=reduction, block_size=128)
    ref = reference.generalized_kl(l2, x_1, x_t, jump, reduction=reduction)
    assert loss.dtype == dtype and loss.shape == ref.shape
    assert_close_dtype(loss, ref, dtype)
    g = torch.randn_like(loss)
    loss.backward(g)
    ref.backward(g)
    assert_close_dtype(l1.grad, l2.grad, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_three_way(dtype):
    logits, x_1, x_t, jump = _data(16, 1000, dtype, seed=1)
    jump = jump.float()
    l1, l32, l16 = (
        t.requires_grad_(True) for t in (logits.clone(), logits.float(), logits.clone())
    )
    loss = fm_kernels.generalized_kl(l1, x_1, x_t, jump, block_size=256)
    ref = reference.generalized_kl(l32, x_1, x_t, jump)
    same = reference.generalized_kl(l16, x_1, x_t, jump, upcast=False)
    assert_three_way(loss, ref, same, atol=1e-5)
    for t in (loss, ref, same):
        t.backward()
    assert l1.grad.dtype == dtype  # the gradient is stored in the logits' dtype
    assert_three_way(l1.grad, l32.grad, l16.grad, atol=storage_atol(l32.grad, dtype))


def test_gradcheck():
    logits, x_1, x_t, jump = _data(3, 20, torch.float64, seed=2)
    f = lambda lg: fm_kernels.generalized_kl(lg, x_1, x_t, jump, reduction="none", block_size=16)
    assert torch.autograd.gradcheck(f, (logits.requires_grad_(True),), fast_mode=True)


def test_noncontiguous_extreme_and_empty():
    logits, x_1, x_t, jump = _data(6, 50, torch.float32, seed=3)
    logits[0, x_1[0]] = -1e4  # log p(x_1) ~ -1e4: no overflow, no NaN
    wide = torch.cat([logits, logits], dim=1)[:, ::2]  # column stride 2
    assert_close_dtype(
        fm_kernels.generalized_kl(wide, x_1, x_t, jump, reduction="none"),
        reference.generalized_kl(wide, x_1, x_t, jump, reduction="none"),
        torch.float32,
    )
    with pytest.raises(ValueError, match="logits must hold at least one row"):
        fm_kernels.generalized_kl(logits[:0], x_1[:0], x_t[:0], jump[:0], reduction="none")


def test_bad_arguments():
    logits, x_1, x_t, jump = _data(4, 10, torch.float32)
    with pytest.raises(ValueError, match="x_1"):
        fm_kernels.generalized_kl(logits, x_1 + 10, x_t, jump)
    with pytest.raises(TypeError, match="x_t"):
        fm_kernels.generalized_kl(logits, x_1, x_t.float(), jump)
    with pytest.raises(ValueError, match="jump_coefficient"):
        fm_kernels.generalized_kl(logits, x_1, x_t, jump[:2])
    with pytest.raises(ValueError, match="logits"):
        fm_kernels.generalized_kl(logits[0], x_1, x_t, jump)
    with pytest.raises(ValueError, match="reduction"):
        fm_kernels.generalized_kl(logits, x_1, x_t, jump, reduction="batchmean")


def test_half_logits_with_fp64_coefficients():
    # fp64 compute, bf16 gradient store: the path the interpreter once turned into zeros.
    logits, x_1, x_t, jump = _data(5, 40, torch.bfloat16, seed=4)
    l1, l2 = (logits.clone().requires_grad_(True) for _ in range(2))
    fm_kernels.generalized_kl(l1, x_1, x_t, jump.double()).backward()
    reference.generalized_kl(l2, x_1, x_t, jump.double()).backward()
    torch.testing.assert_close(
        l1.grad, l2.grad, atol=2 * storage_atol(l2.grad, torch.bfloat16), rtol=0
    )
