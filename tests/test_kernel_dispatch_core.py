"""fm-core's loss with backend="triton" (fm-kernels, interpreted on CPU) agrees with the torch path."""

from __future__ import annotations

import pytest
import torch

import fm_kernels
from fm_core import AffineProbPath, CondOTScheduler, CosineScheduler, FlowMatchingLoss


def test_kernels_run_interpreted_here():
    assert fm_kernels.INTERPRETED, "TRITON_INTERPRET=1 must be set before fm_kernels is imported"


@pytest.mark.parametrize("prediction", ["velocity", "x_1", "epsilon"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("scheduler", [CondOTScheduler, CosineScheduler])
def test_triton_loss_and_gradient_match_torch(prediction, reduction, scheduler):
    g = torch.Generator().manual_seed(0)
    shape = (5, 3, 7, 6)  # not a multiple of any block size
    x_0, x_1 = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    t = torch.rand(5, generator=g)
    weights = torch.rand(5, generator=g) + 0.5
    path = AffineProbPath(scheduler())
    results = {}
    for backend in ("torch", "triton"):
        out = torch.randn(shape, generator=torch.Generator().manual_seed(1)).requires_grad_()
        loss = FlowMatchingLoss(path, prediction=prediction, reduction=reduction, backend=backend)(
            out, x_0, x_1, t, weights=weights
        )
        loss.sum().backward()
        results[backend] = (loss.detach(), out.grad)
    torch.testing.assert_close(results["triton"][0], results["torch"][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results["triton"][1], results["torch"][1], rtol=1e-5, atol=1e-7)


def test_auto_backend_stays_on_torch_for_cpu_tensors(monkeypatch):
    """DESIGN.md: "auto" uses a kernel only on CUDA tensors."""
    calls = []
    monkeypatch.setattr(fm_kernels, "fm_loss", lambda *a, **k: calls.append(1))
    x = torch.randn(4, 2)
    FlowMatchingLoss(AffineProbPath(CondOTScheduler()))(x, x, x, torch.rand(4))
    assert calls == []


@pytest.mark.parametrize("prediction", ["velocity", "x_1", "epsilon"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_path_is_pinned_to_the_kernels_reference(prediction, reduction):
    """fm-core keeps its own torch path (fm-kernels is optional); it must equal the reference."""
    g = torch.Generator().manual_seed(3)
    x_0, x_1, out = torch.randn(3, 4, 2, 5, generator=g, dtype=torch.float64)
    t, w = torch.rand(2, 4, generator=g, dtype=torch.float64)
    path = AffineProbPath(CosineScheduler())
    ours = FlowMatchingLoss(path, prediction=prediction, reduction=reduction, backend="torch")
    c = path.scheduler(t)
    ref = fm_kernels.reference.fm_loss(
        out, x_0, x_1, c.alpha_t, c.sigma_t, c.d_alpha_t, c.d_sigma_t,
        prediction=prediction, weights=w, reduction=reduction,
    )  # fmt: skip
    torch.testing.assert_close(ours(out, x_0, x_1, t, weights=w), ref, rtol=1e-14, atol=0)
