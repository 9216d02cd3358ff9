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


def _data(n, v, h, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    hidden, weight, bias = r(n, h), r(v, h) / h**0.5, r(v)
    x_1 = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    x_t = torch.randint(0, v, (n,), generator=g).to(DEVICE)
    x_t[::3] = x_1[::3]
    jump = torch.rand(n, generator=g, dtype=torch.float64).to(DEVICE) + 0.5
    return hidden, weight, bias, x_1, x_t, jump


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_reference(dtype, reduction):
    # 13 tokens in chunks of 4: 4 chunks, the last holding one token.
    hidden, weight, bias, x_1, x_t, jump = _data(13, 70, 16, dtype)
    a = [t.clone().requires_grad_(True) for t in (hidden, weight, bias)]
    b = [t.clone().requires_grad_(True) for t in (hidden, weight, bias)]
    jump = jump.to(dtype)
    loss = fm_kernels.generalized_kl_linear(
        a[0], a[1], x_1, x_t, jump, bias=a[2], reduction=reduction, chunk_size=4
    )
    ref = reference.generalized_kl_linear(
        b[0], b[1], x_1, x_t, jump, bias=b[2], reduction=reduction
    )
    assert_close_dtype(loss, ref, dtype)
    g = torch.randn_like(loss)
    loss.backward(g)
    ref.backward(g)
    for p, q in zip(a, b):
        assert_close_dtype(p.grad, q.grad, dtype)


def test_bf16_three_way_and_default_chunk():
    hidden, weight, _, x_1, x_t, jump = _data(24, 200, 32, torch.bfloat16, seed=1)
    runs = []
    for fn, kw, cast in (
        (fm_kernels.generalized_kl_linear, {}, lambda t: t),
        (reference.generalized_kl_linear, {}, lambda t: t.float()),
        (reference.generalized_kl_linear, {"upcast": False}, lambda t: t),
    ):
        h, w = (cast(t).clone().requires_grad_(True) for t in (hidden, weight))
        loss = fn(h, w, x_1, x_t, jump, **kw)
        loss.backward()
        runs.append((loss, h.grad, w.grad))
    kern, ref, same = runs
    assert_three_way(kern[0], ref[0], same[0], atol=1e-5)
    for i in (1, 2):
        assert kern[i].dtype == torch.bfloat16
        assert_three_way(kern[i], ref[i], same[i], atol=storage_atol(ref[i], torch.bfloat16))


def test_gradcheck():
    hidden, weight, bias, x_1, x_t, jump = _data(5, 9, 3, torch.float64, seed=2)
    f = lambda h, w, b: fm_kernels.generalized_kl_linear(
        h, w, x_1, x_t, jump, bias=b, reduction="none", chunk_size=2
    )
    args = [t.requires_grad_(True) for t in (hidden, weight, bias)]
    assert torch.autograd.gradcheck(f, args, fast_mode=True)


def test_empty_and_bad_arguments():
    hidden, weight, bias, x_1, x_t, jump = _data(4, 10, 6, torch.float32)
    with pytest.raises(ValueError, match="hidden must hold at least one row"):
        fm_kernels.generalized_kl_linear(
            hidden[:0], weight, x_1[:0], x_t[:0], jump[:0], reduction="none"
        )
    with pytest.raises(ValueError, match="weight"):
        fm_kernels.generalized_kl_linear(hidden, weight[:, :3], x_1, x_t, jump)
    with pytest.raises(ValueError, match="bias"):
        fm_kernels.generalized_kl_linear(hidden, weight, x_1, x_t, jump, bias=bias[:3])
    with pytest.raises(ValueError, match="chunk_size"):
        fm_kernels.generalized_kl_linear(hidden, weight, x_1, x_t, jump, chunk_size=0)
    with pytest.raises(ValueError, match="x_t"):
        fm_kernels.generalized_kl_linear(hidden, weight, x_1, x_t - 20, jump)
