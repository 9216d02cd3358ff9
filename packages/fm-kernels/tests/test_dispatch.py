"""Backend selection and the torch fallbacks (these run with or without TRITON_INTERPRET)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

import fm_kernels
from fm_kernels import _dispatch, reference


def _loss_args():
    g = torch.Generator().manual_seed(0)
    out, x_0, x_1 = torch.randn(3, 4, 5, generator=g)
    return out, x_0, x_1, *torch.rand(4, 4, generator=g)


def test_public_names():
    assert set(fm_kernels.__all__) >= {
        "affine_interpolate",
        "fm_loss",
        "generalized_kl",
        "generalized_kl_linear",
        "mixture_euler_step",
        "mixture_sample",
        "reference",
        "__version__",
    }


def test_torch_backend_is_the_reference():
    args = _loss_args()
    torch.testing.assert_close(
        fm_kernels.fm_loss(*args, backend="torch"), reference.fm_loss(*args), rtol=0, atol=0
    )


def test_auto_falls_back_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.setattr(_dispatch, "INTERPRETED", False)
    assert _dispatch.resolve_backend("auto", [torch.zeros(1)], "f") == "torch"
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        fm_kernels.fm_loss(*_loss_args(), backend="triton")


def test_bad_backend():
    with pytest.raises(ValueError, match="backend"):
        fm_kernels.fm_loss(*_loss_args(), backend="cuda")


def test_import_without_triton():
    # A machine without Triton: import works, auto runs torch, triton says what to install.
    code = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None
        import torch, fm_kernels
        assert not fm_kernels.HAS_TRITON
        out = fm_kernels.fm_loss(*torch.randn(3, 2, 4), *torch.rand(4, 2))
        assert out.shape == ()
        try:
            fm_kernels.generalized_kl(torch.randn(2, 3), torch.zeros(2, dtype=torch.long),
                                      torch.zeros(2, dtype=torch.long), torch.ones(2),
                                      backend="triton")
        except ImportError as e:
            assert "pip install triton" in str(e)
        else:
            raise AssertionError("no ImportError")
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
