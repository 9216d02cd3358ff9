from __future__ import annotations

import pytest
import torch

import fm_kernels
from fm_kernels import reference
from fm_kernels.testing import DEVICE, assert_close_dtype, assert_three_way


def _data(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_0, x_1 = torch.randn(2, *shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    coeffs = [
        c.to(DEVICE, dtype) for c in torch.randn(4, shape[0], generator=g, dtype=torch.float64)
    ]
    return x_0, x_1, coeffs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_derivative", [True, False])
def test_matches_reference(dtype, with_derivative):
    # 5 * 3 * 37 = 555 elements in 64-element blocks: 9 programs, rows straddling blocks.
    x_0, x_1, c = _data((5, 3, 37), dtype)
    c = c if with_derivative else c[:2]
    x_t, dx_t = fm_kernels.affine_interpolate(x_0, x_1, *c, block_size=64)
    r_t, r_dt = reference.affine_interpolate(x_0, x_1, *c)
    assert_close_dtype(x_t, r_t, dtype)
    if with_derivative:
        assert_close_dtype(dx_t, r_dt, dtype)
    else:
        assert dx_t is None


def test_bf16_three_way():
    x_0, x_1, c = _data((4, 3, 33), torch.bfloat16, seed=1)
    c = [t.float() for t in c]
    kern = fm_kernels.affine_interpolate(x_0, x_1, *c)
    ref = reference.affine_interpolate(x_0.float(), x_1.float(), *c)
    same = reference.affine_interpolate(x_0, x_1, *[t.bfloat16() for t in c], upcast=False)
    for k, r, s in zip(kern, ref, same):
        assert k.dtype == torch.bfloat16
        # one ulp of slack: the interpreter truncates fp32 -> bf16 stores (see testing.storage_atol)
        assert_three_way(k, r, s, atol=r.abs().max().item() * 2**-7)


def test_gradcheck_noncontiguous_empty_and_coefficient_shapes():
    x_0, x_1, c = _data((3, 4), torch.float64, seed=2)
    f = lambda a, b: fm_kernels.affine_interpolate(a, b, *c, block_size=16)
    assert torch.autograd.gradcheck(f, (x_0.requires_grad_(True), x_1.requires_grad_(True)))
    a, b = x_0.detach().T, x_1.detach().T  # [4, 3] views with stride (1, 4)
    cc = [t[0].expand(4) for t in c]
    assert_close_dtype(
        fm_kernels.affine_interpolate(a, b, *cc)[0],
        reference.affine_interpolate(a, b, *cc)[0],
        torch.float64,
    )
    col = [t[:, None] for t in c]  # [B, 1] coefficients are accepted
    assert_close_dtype(
        fm_kernels.affine_interpolate(x_0, x_1, *col)[1],
        reference.affine_interpolate(x_0, x_1, *c)[1],
        torch.float64,
    )
    # One rule in every fm-* package: an empty batch is an error, before any work.
    with pytest.raises(ValueError, match="x_0 must hold at least one row"):
        fm_kernels.affine_interpolate(x_0[:0], x_1[:0], *[t[:0] for t in c])


def test_bad_arguments():
    x_0, x_1, c = _data((3, 4), torch.float32)
    with pytest.raises(ValueError, match="x_1"):
        fm_kernels.affine_interpolate(x_0, x_1[:, :2], *c)
    with pytest.raises(ValueError, match="sigma_t"):
        fm_kernels.affine_interpolate(x_0, x_1, c[0], c[1][:2])
    with pytest.raises(ValueError, match="d_alpha_t and d_sigma_t"):
        fm_kernels.affine_interpolate(x_0, x_1, c[0], c[1], c[2])
    with pytest.raises(TypeError, match="x_0"):
        fm_kernels.affine_interpolate(x_0.long(), x_1, *c)
