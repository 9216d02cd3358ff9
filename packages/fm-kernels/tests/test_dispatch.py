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
    # Frozen (as in tests/test_public_api.py): a new or removed name fails here on purpose.
    # affine_interpolate and mixture_sample were removed (issue 16): no path called them.
    public = "BACKENDS HAS_TRITON INTERPRETED __version__ fm_loss generalized_kl"
    public += " generalized_kl_linear get_value_checks mixture_euler_step reference"
    public += " select_backend set_value_checks"
    assert sorted(fm_kernels.__all__) == public.split()
    ops = "fm_loss generalized_kl generalized_kl_linear mixture_euler_step"
    assert sorted(reference.__all__) == ops.split()


def test_torch_backend_is_the_reference():
    args = _loss_args()
    torch.testing.assert_close(
        fm_kernels.fm_loss(*args, backend="torch"), reference.fm_loss(*args), rtol=0, atol=0
    )


def test_auto_falls_back_on_cpu_without_interpreter(monkeypatch):
    monkeypatch.setattr(_dispatch, "INTERPRETED", False)
    assert fm_kernels.select_backend("auto", torch.zeros(1)) == "torch"
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        fm_kernels.fm_loss(*_loss_args(), backend="triton")


def test_select_backend_rule(monkeypatch):
    x = torch.zeros(2)
    assert fm_kernels.select_backend("torch", x) == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        fm_kernels.select_backend("cuda", x)
    monkeypatch.setattr(_dispatch, "INTERPRETED", True)
    monkeypatch.setattr(_dispatch, "HAS_TRITON", True)
    assert fm_kernels.select_backend("auto", x) == "triton"  # interpreted CPU tensors
    # While torch.compile traces, "auto" keeps the graph whole (the reference compiles);
    # an explicit request is honoured.
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert fm_kernels.select_backend("auto", x) == "torch"
    assert fm_kernels.select_backend("triton", x) == "triton"
    monkeypatch.setattr(_dispatch, "HAS_TRITON", False)
    with pytest.raises(ImportError, match="f: backend='triton' needs Triton"):
        fm_kernels.select_backend("triton", x, name="f")


def test_value_check_mode_is_set_here_or_linked():
    x = torch.zeros(1)
    previous = fm_kernels.set_value_checks("off")
    try:
        assert fm_kernels.get_value_checks() == "off" and not _dispatch.checks_enabled(x)
        mode = ["always"]
        fm_kernels.set_value_checks(lambda: mode[0])  # how fm-core links its one switch
        assert _dispatch.checks_enabled(torch.zeros(1, device="meta"))
        mode[0] = "auto"
        assert not _dispatch.checks_enabled(torch.zeros(1, device="meta"))
        with pytest.raises(ValueError, match="mode must be one of"):
            fm_kernels.set_value_checks("sometimes")
    finally:
        fm_kernels.set_value_checks(previous)


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
