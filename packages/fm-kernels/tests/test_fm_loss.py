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

PREDICTIONS = ("velocity", "x_1", "epsilon")


def _data(shape, dtype, weights=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    out, x_0, x_1 = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    b = shape[0]
    coeffs = torch.rand(4, b, generator=g, dtype=torch.float64) * 2 - 0.5
    w = torch.rand(b, generator=g, dtype=torch.float64) if weights else None
    cast = lambda t: t.to(DEVICE, dtype) if t is not None else None
    return cast(out), cast(x_0), cast(x_1), [cast(c) for c in coeffs], cast(w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_reference(dtype, prediction, reduction):
    # (5, 3, 37) with 32-element blocks: 4 chunks per row, the last one 15/32 full.
    out, x_0, x_1, c, w = _data((5, 3, 37), dtype)
    kw = dict(prediction=prediction, reduction=reduction, weights=w)
    o1 = out.clone().requires_grad_(True)
    o2 = out.clone().requires_grad_(True)
    loss = fm_kernels.fm_loss(o1, x_0, x_1, *c, block_size=32, **kw)
    ref = reference.fm_loss(o2, x_0, x_1, *c, **kw)
    assert loss.dtype == dtype and loss.shape == ref.shape
    assert_close_dtype(loss, ref, dtype)
    g = torch.randn_like(loss)
    loss.backward(g)
    ref.backward(g)
    assert_close_dtype(o1.grad, o2.grad, dtype)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_bf16_three_way(prediction):
    out, x_0, x_1, c, w = _data((4, 2, 33, 5), torch.bfloat16, seed=1)
    o1 = out.clone().requires_grad_(True)
    o32 = out.float().requires_grad_(True)
    o16 = out.clone().requires_grad_(True)
    kw = dict(prediction=prediction, weights=w)
    loss = fm_kernels.fm_loss(o1, x_0, x_1, *c, **kw)
    ref = reference.fm_loss(o32, x_0.float(), x_1.float(), *c, **kw)
    same = reference.fm_loss(o16, x_0, x_1, *c, upcast=False, **kw)
    assert loss.dtype == torch.float32 and o1.dtype == torch.bfloat16
    assert_three_way(loss, ref, same, atol=1e-6)
    for t in (loss, ref, same):
        t.backward()
    assert o1.grad.dtype == torch.bfloat16
    assert_three_way(o1.grad, o32.grad, o16.grad, atol=storage_atol(o32.grad, torch.bfloat16))


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck(prediction, reduction):
    out, x_0, x_1, c, w = _data((3, 2, 5), torch.float64, seed=2)
    args = [t.requires_grad_(True) for t in (out, x_0, x_1, w)]
    f = lambda o, a, b, ww: fm_kernels.fm_loss(
        o, a, b, *c, prediction=prediction, weights=ww, reduction=reduction, block_size=16
    )
    assert torch.autograd.gradcheck(f, args, fast_mode=True)


def test_odd_shapes_noncontiguous_and_1d():
    out, x_0, x_1, c, _ = _data((6, 11, 7), torch.float32, weights=False)
    # Transposed views: non-contiguous inputs are made contiguous before the launch.
    args = (out.transpose(1, 2), x_0.transpose(1, 2), x_1.transpose(1, 2))
    assert_close_dtype(fm_kernels.fm_loss(*args, *c), reference.fm_loss(*args, *c), torch.float32)
    flat = (out[:, 0, 0], x_0[:, 0, 0], x_1[:, 0, 0])  # [B]: D = 1
    assert_close_dtype(fm_kernels.fm_loss(*flat, *c), reference.fm_loss(*flat, *c), torch.float32)


def test_empty_batch_is_an_error():
    # One rule in every fm-* package (docs/fm-core/validation.md): B = 0 raises, before any work.
    out, x_0, x_1, c, _ = _data((0, 3), torch.float32, weights=False)
    for reduction in ("none", "sum", "mean"):
        with pytest.raises(ValueError, match="output must hold at least one row"):
            fm_kernels.fm_loss(out, x_0, x_1, *c, reduction=reduction)


def test_grad_for_x_0_x_1_and_scalar_grad_output():
    out, x_0, x_1, c, _ = _data((3, 8), torch.float32, weights=False)
    leaves = [t.clone().requires_grad_(True) for t in (out, x_0, x_1)]
    refs = [t.clone().requires_grad_(True) for t in (out, x_0, x_1)]
    (3.0 * fm_kernels.fm_loss(*leaves, *c)).backward()
    (3.0 * reference.fm_loss(*refs, *c)).backward()
    for a, b in zip(leaves, refs):
        assert_close_dtype(a.grad, b.grad, torch.float32)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"prediction": "score"}, ValueError, "prediction"),
        ({"reduction": "avg"}, ValueError, "reduction"),
        ({"backend": "cuda"}, ValueError, "backend"),
        ({"weights": torch.ones(2)}, ValueError, "weights"),
        ({"block_size": 20}, ValueError, "block_size"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    out, x_0, x_1, c, _ = _data((3, 4), torch.float32, weights=False)
    with pytest.raises(error, match=match):
        fm_kernels.fm_loss(out, x_0, x_1, *c, **kwargs)


def test_bad_shapes_and_dtypes():
    out, x_0, x_1, c, _ = _data((3, 4), torch.float32, weights=False)
    with pytest.raises(ValueError, match="x_1"):
        fm_kernels.fm_loss(out, x_0, x_1[:, :2], *c)
    with pytest.raises(ValueError, match="d_alpha_t"):
        fm_kernels.fm_loss(out, x_0, x_1, c[0], c[1], c[2][:2], c[3])
    with pytest.raises(TypeError, match="x_0"):
        fm_kernels.fm_loss(out, x_0.long(), x_1, *c)
