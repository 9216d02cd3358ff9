"""Test helpers for kernels and their callers: where kernels can run, and tolerance checks.

flash-attention's three-way rule judges a low-precision kernel against the error plain torch
makes in the same dtype: $|k - r_{32}| \\le 2\\,|t_{\\text{same}} - r_{32}| + \\text{atol}$.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fm_kernels._dispatch import HAS_TRITON, INTERPRETED

__all__ = [
    "DEVICE",
    "assert_close_dtype",
    "assert_three_way",
    "kernels_can_run",
    "storage_atol",
]

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def kernels_can_run() -> bool:
    """Whether Triton kernels can run here: CUDA, or CPU under ``TRITON_INTERPRET=1``."""
    return HAS_TRITON and (DEVICE == "cuda" or INTERPRETED)


def assert_three_way(kernel: Tensor, ref_fp32: Tensor, torch_same_dtype: Tensor, atol: float):
    """Assert $\\max|k - r_{32}| \\le 2 \\max|t_{\\text{same}} - r_{32}| + \\text{atol}$."""
    kernel, ref, same = (t.detach().double() for t in (kernel, ref_fp32, torch_same_dtype))
    bound = 2 * (same - ref).abs().max().item() + atol
    err = (kernel - ref).abs().max().item()
    assert err <= bound, f"kernel error {err:.3g} > bound {bound:.3g}"


def assert_close_dtype(actual: Tensor, expected: Tensor, dtype: torch.dtype) -> None:
    """fp32 / fp64 comparison at a few ulps (rtol = atol = 1e-5 for fp32, 1e-12 for fp64)."""
    tol = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


def storage_atol(reference: Tensor, dtype: torch.dtype) -> float:
    """One ulp of ``dtype`` at ``reference``'s largest magnitude.

    Add it to the three-way ``atol`` for outputs a kernel *stores* in bf16/fp16: GPUs round the
    fp32 -> bf16 store to nearest even, but the Triton 3.9 interpreter truncates (measured: 519 of
    1024 random values differ from torch's cast), doubling the storage error on CPU.
    """
    return reference.detach().abs().max().item() * torch.finfo(dtype).eps
