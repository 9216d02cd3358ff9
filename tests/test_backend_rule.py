"""One kernel-dispatch rule for fm-core, fm-discrete and fm-kernels (issue 12 §2).

An explicit ``backend="triton"`` runs a kernel or raises; it never runs torch behind the caller's
back, and fm-core / fm-discrete raise exactly fm-kernels' errors. The discrete sampler uses its
kernel only where the kernel keeps the float64 categorical default and the caller's generator.
"""

from __future__ import annotations

import pytest
import torch

import fm_kernels
from fm_core import CondOTProbPath, CondOTScheduler, FlowMatchingLoss, ModelWrapper
from fm_discrete import (
    MixtureDiscreteEulerSolver,
    MixtureDiscreteProbPath,
    MixturePathGeneralizedKL,
)
from fm_kernels import _dispatch

V = 5


def _fm_loss_call(backend):
    x = torch.randn(3, 4)
    return FlowMatchingLoss(CondOTProbPath(), backend=backend)(x, x, x, torch.rand(3))


def _gkl_call(backend):
    logits, x_1 = torch.randn(2, 3, V), torch.randint(0, V, (2, 3))
    loss = MixturePathGeneralizedKL(MixtureDiscreteProbPath(CondOTScheduler()), backend=backend)
    return loss(logits, x_1, x_1, torch.rand(2))


@pytest.mark.parametrize("call", [_fm_loss_call, _gkl_call])
def test_explicit_triton_without_triton_raises_instead_of_running_torch(call, monkeypatch):
    # Before: fm-core accepted the interpreted CPU tensors, then called the kernel with its
    # default backend="auto", which ran the torch reference silently when Triton was missing.
    monkeypatch.setattr(_dispatch, "HAS_TRITON", False)
    with pytest.raises(ImportError, match="pip install triton"):
        call("triton")
    assert torch.isfinite(call("auto"))  # auto still falls back quietly


@pytest.mark.parametrize("call", [_fm_loss_call, _gkl_call])
def test_triton_on_cpu_without_interpreter_raises_fm_kernels_error(call, monkeypatch):
    monkeypatch.setattr(_dispatch, "INTERPRETED", False)
    x = torch.randn(3, 4)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1") as ours:
        call("triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1") as theirs:
        fm_kernels.fm_loss(x, x, x, *torch.rand(4, 3), backend="triton")
    # One rule, one message (up to the function name it reports).
    assert str(ours.value).split(": ", 1)[1] == str(theirs.value).split(": ", 1)[1]


class _Posterior(torch.nn.Module):
    def forward(self, x, t):
        return torch.full((*x.shape, V), 1.0 / V)


def _solver(backend):
    path = MixtureDiscreteProbPath(CondOTScheduler())
    return MixtureDiscreteEulerSolver(ModelWrapper(_Posterior()), path, V, backend=backend)


def test_discrete_triton_refuses_float64_or_seeded_draws():
    # Before: the kernel drew in float32 with its own seed whatever the caller asked for.
    x = torch.zeros(4, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"dtype_categorical=torch\.float32 and no generator"):
        _solver("triton").sample(x, 0.25)  # default dtype_categorical=float64
    with pytest.raises(ValueError, match="no generator"):
        _solver("triton").sample(
            x, 0.25, dtype_categorical=torch.float32, generator=torch.Generator()
        )
    out = _solver("triton").sample(x, 0.25, dtype_categorical=torch.float32)
    assert out.shape == x.shape


def test_discrete_auto_keeps_float64_and_generator(monkeypatch):
    calls = []
    monkeypatch.setattr(
        fm_kernels, "mixture_euler_step", lambda *a, **k: calls.append(1) or a[1].clone()
    )
    monkeypatch.setattr(
        torch.Tensor, "is_cuda", property(lambda self: True)
    )  # "auto" would pick it
    x = torch.zeros(64, 3, dtype=torch.long)
    runs = [
        _solver("auto").sample(x, 0.25, generator=torch.Generator().manual_seed(7))
        for _ in range(2)
    ]
    assert calls == []  # the kernel cannot honour the generator nor float64: torch ran
    assert torch.equal(runs[0], runs[1])
    _solver("auto").sample(x, 0.25, dtype_categorical=torch.float32)
    assert calls  # float32 and no generator: the kernel is used where it keeps both


def test_auto_uses_torch_while_compiling(monkeypatch):
    """A compiled step stays whole: inductor fuses the torch path; no hand-launched kernel."""
    from fm_core.utils.backend import resolve_backend

    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    x = torch.zeros(2)
    assert resolve_backend("auto", x) is fm_kernels  # eager, "CUDA": the kernel
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert resolve_backend("auto", x) is None
    assert resolve_backend("triton", x) is fm_kernels  # an explicit request is honoured


def test_fm_core_uses_fm_kernels_public_selector(monkeypatch):
    """fm-core's wrapper asks ``fm_kernels.select_backend``, the one rule; no private module."""
    from fm_core.ext import resolve_backend

    asked = []
    monkeypatch.setattr(
        fm_kernels, "select_backend", lambda b, *t, name: asked.append((b, len(t))) or "torch"
    )
    x = torch.zeros(2)
    assert resolve_backend("triton", x, x) is None  # the selector's answer is final
    assert asked == [("triton", 2)]
    assert resolve_backend("auto", x) is None  # CPU tensors: fm-core's "auto" never asks
    assert asked == [("triton", 2)]


def test_fm_core_value_check_switch_governs_the_kernels():
    """fm-core links its one switch into fm-kernels when it dispatches (no sys.modules peeking)."""
    from fm_core.ext import resolve_backend
    from fm_core.utils import value_checks

    resolve_backend("triton", torch.zeros(1))  # interpreted here: links fm-core's switch
    assert _dispatch.checks_enabled(torch.zeros(1))
    with value_checks("off"):
        assert fm_kernels.get_value_checks() == "off"
        assert not _dispatch.checks_enabled(torch.zeros(1))
        # A token id out of range is no longer checked on the CPU (the kernel would read out of
        # bounds, which is what "off" means); with checks on it raises before any work.
    with pytest.raises(ValueError, match=r"x_1 must hold token ids in \[0, 3\)"):
        fm_kernels.generalized_kl(
            torch.zeros(2, 3), torch.tensor([0, 5]), torch.zeros(2, dtype=torch.long), torch.ones(2)
        )


def test_the_leaf_imports_no_fm_package_and_peeks_at_no_module():
    import pathlib

    src = pathlib.Path(fm_kernels.__file__).parent
    for path in src.glob("*.py"):
        text = path.read_text()
        assert "sys.modules" not in text, path.name
        assert "import fm_core" not in text and "from fm_core" not in text, path.name
