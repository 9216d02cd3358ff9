import sys

import pytest
import torch

from fm_core.loss import FlowMatchingLoss, flow_matching_loss
from fm_core.path import AffineProbPath, CondOTProbPath
from fm_core.path.scheduler import CosineScheduler, PolynomialConvexScheduler

PATHS = {
    "condot": CondOTProbPath,
    "poly2": lambda: AffineProbPath(PolynomialConvexScheduler(2)),
    "cosine": lambda: AffineProbPath(CosineScheduler()),
}


def _data(shape=(6, 3, 4), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_0 = torch.randn(*shape, generator=g, dtype=dtype)
    x_1 = torch.randn(*shape, generator=g, dtype=dtype)
    out = torch.randn(*shape, generator=g, dtype=dtype)
    t = torch.rand(shape[0], generator=g, dtype=dtype)
    return out, x_0, x_1, t


def _direct_per_sample(path, prediction, out, x_0, x_1, t):
    if prediction == "velocity":
        target = path.sample(x_0, x_1, t).dx_t
    elif prediction == "x_1":
        target = x_1
    else:
        target = x_0
    return ((out - target) ** 2).flatten(1).mean(1)


@pytest.mark.parametrize("path_name", list(PATHS))
@pytest.mark.parametrize("prediction", ["velocity", "x_1", "epsilon"])
def test_matches_direct_computation(path_name, prediction):
    path = PATHS[path_name]()
    out, x_0, x_1, t = _data()
    expected = _direct_per_sample(path, prediction, out, x_0, x_1, t)
    loss = FlowMatchingLoss(path, prediction=prediction, reduction="none", backend="torch")
    torch.testing.assert_close(loss(out, x_0, x_1, t), expected)
    mean = FlowMatchingLoss(path, prediction=prediction)(out, x_0, x_1, t)
    torch.testing.assert_close(mean, expected.mean())


def test_velocity_target_is_path_dx_t_for_condot():
    out, x_0, x_1, t = _data()
    per = flow_matching_loss(CondOTProbPath(), out, x_0, x_1, t, reduction="none")
    torch.testing.assert_close(per, ((out - (x_1 - x_0)) ** 2).flatten(1).mean(1))


def test_reductions_and_weights():
    path = CondOTProbPath()
    out, x_0, x_1, t = _data()
    w = torch.rand(6, dtype=torch.float64)
    none = flow_matching_loss(path, out, x_0, x_1, t, reduction="none")
    assert none.shape == (6,)
    weighted = flow_matching_loss(path, out, x_0, x_1, t, weights=w, reduction="none")
    torch.testing.assert_close(weighted, none * w)
    torch.testing.assert_close(
        flow_matching_loss(path, out, x_0, x_1, t, weights=w, reduction="sum"), (none * w).sum()
    )
    torch.testing.assert_close(
        flow_matching_loss(path, out, x_0, x_1, t, weights=w), (none * w).mean()
    )
    assert flow_matching_loss(path, out, x_0, x_1, t).ndim == 0


def test_from_sample_and_2d_inputs():
    path = CondOTProbPath()
    out, x_0, x_1, t = _data(shape=(5, 2))
    loss = FlowMatchingLoss(path)
    s = path.sample(x_0, x_1, t)
    torch.testing.assert_close(loss.from_sample(out, s), loss(out, x_0, x_1, t))


def test_gradient_matches_closed_form():
    path = AffineProbPath(PolynomialConvexScheduler(2))
    out, x_0, x_1, t = _data()
    out.requires_grad_(True)
    w = torch.rand(6, dtype=torch.float64)
    FlowMatchingLoss(path)(out, x_0, x_1, t, weights=w).backward()
    target = path.sample(x_0, x_1, t).dx_t
    d = out[0].numel()
    expected = 2 * (out - target) * w.view(-1, 1, 1) / (d * 6)
    torch.testing.assert_close(out.grad, expected.detach())
    out32 = out.detach().float().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda o: flow_matching_loss(path, o, x_0, x_1, t, reduction="none"),
        (out.detach().clone().requires_grad_(True),),
    )
    flow_matching_loss(path, out32, x_0.float(), x_1.float(), t.float()).backward()
    assert out32.grad is not None and torch.isfinite(out32.grad).all()


def test_low_precision_output_accumulates_in_float32():
    out, x_0, x_1, t = _data(dtype=torch.float32)
    loss = flow_matching_loss(CondOTProbPath(), out.bfloat16(), x_0, x_1, t)
    assert loss.dtype == torch.float32


def test_exact_marginal_velocity_beats_wrong_one():
    """Gaussian N(0, I) -> N(m, s^2 I) on CondOT: the marginal velocity is known in closed form.

    x_t = (1 - t) x_0 + t x_1 is Gaussian with mean t m and std r_t = sqrt((1-t)^2 + t^2 s^2);
    u_t(x) = m + (d/dt log r_t) (x - t m), d/dt log r_t = (t s^2 - (1 - t)) / r_t^2.
    It minimises the CFM loss, so any other field (here, scaled by 0.8) does worse.
    """
    g = torch.Generator().manual_seed(1)
    n, d, s = 20000, 2, 0.5
    m = torch.tensor([2.0, -1.0], dtype=torch.float64)
    x_0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    x_1 = m + s * torch.randn(n, d, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64)
    path = CondOTProbPath()
    x_t = path.sample(x_0, x_1, t).x_t
    tt = t[:, None]
    r2 = (1 - tt) ** 2 + tt**2 * s**2
    u = m + (tt * s**2 - (1 - tt)) / r2 * (x_t - tt * m)
    loss = FlowMatchingLoss(path)
    best = loss(u, x_0, x_1, t)
    assert best < loss(0.8 * u, x_0, x_1, t)
    assert best < loss(u + 0.1, x_0, x_1, t)
    # The CFM loss at the optimum equals the conditional variance, far below the naive target scale.
    assert best < loss(torch.zeros_like(u), x_0, x_1, t)


def test_triton_backend_without_fm_kernels_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "fm_kernels", None)
    out, x_0, x_1, t = _data()
    with pytest.raises(ImportError, match="pip install fm-kernels"):
        FlowMatchingLoss(CondOTProbPath(), backend="triton")(out, x_0, x_1, t)
    # auto falls back quietly on CPU tensors (and would without fm_kernels anyway).
    FlowMatchingLoss(CondOTProbPath(), backend="auto")(out, x_0, x_1, t)


def test_auto_backend_on_cpu_does_not_call_kernels(monkeypatch):
    class Fake:
        @staticmethod
        def fm_loss(*args, **kwargs):
            raise AssertionError("kernel called for CPU tensors")

    monkeypatch.setitem(sys.modules, "fm_kernels", Fake)
    out, x_0, x_1, t = _data()
    FlowMatchingLoss(CondOTProbPath(), backend="auto")(out, x_0, x_1, t)


def test_triton_backend_dispatches_with_kernel_signature(monkeypatch):
    calls = {}

    class Fake:
        @staticmethod  # fm-kernels' public rule, as under Triton's interpreter: CPU tensors pass
        def select_backend(backend, *tensors, name):
            return "triton"

        @staticmethod
        def set_value_checks(mode):
            return "auto"

        @staticmethod
        def fm_loss(
            output,
            x_0,
            x_1,
            alpha_t,
            sigma_t,
            d_alpha_t,
            d_sigma_t,
            *,
            prediction,
            weights,
            reduction,
            backend,
        ):
            calls.update(
                prediction=prediction, reduction=reduction, shape=alpha_t.shape, backend=backend
            )
            return output.sum()

    monkeypatch.setitem(sys.modules, "fm_kernels", Fake)
    out, x_0, x_1, t = _data()
    FlowMatchingLoss(CondOTProbPath(), prediction="x_1", reduction="sum", backend="triton")(
        out, x_0, x_1, t
    )
    # The backend is forwarded: fm-kernels must run the kernel or raise, never run torch quietly.
    assert calls == {"prediction": "x_1", "reduction": "sum", "shape": (6,), "backend": "triton"}


@pytest.mark.parametrize("t_bad", [1.5, -0.25, float("nan")])
def test_time_outside_unit_interval_raises(t_bad):
    """Before: VPScheduler at t = 1.5 gave a finite, meaningless loss without a word."""
    from fm_core.path.scheduler import VPScheduler

    out, x_0, x_1, t = _data()
    t[2] = t_bad
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        FlowMatchingLoss(AffineProbPath(VPScheduler()))(out, x_0, x_1, t)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prediction": "score"}, "prediction"),
        ({"reduction": "avg"}, "reduction"),
        ({"backend": "cuda"}, "backend"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FlowMatchingLoss(CondOTProbPath(), **kwargs)
    out, x_0, x_1, t = _data()
    with pytest.raises(ValueError, match=match):
        flow_matching_loss(CondOTProbPath(), out, x_0, x_1, t, **kwargs)


def test_bad_inputs():
    path = CondOTProbPath()
    loss = FlowMatchingLoss(path)
    out, x_0, x_1, t = _data()
    with pytest.raises(TypeError, match="path"):
        FlowMatchingLoss("condot")
    with pytest.raises(ValueError, match="x_1"):
        loss(out, x_0, x_1[:, :2], t)
    with pytest.raises(ValueError, match="x_0"):
        loss(out, x_0[:5], x_1, t)
    with pytest.raises(ValueError, match="t must have shape"):
        loss(out, x_0, x_1, t[:3])
    with pytest.raises(TypeError, match="model_output"):
        loss(out.long(), x_0, x_1, t)
    with pytest.raises(TypeError, match="x_0"):
        loss(out, x_0.numpy(), x_1, t)
    with pytest.raises(TypeError, match="t must be a floating"):
        loss(out, x_0, x_1, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="weights"):
        loss(out, x_0, x_1, t, weights=torch.ones(6, 1, dtype=torch.float64))
    with pytest.raises(TypeError, match="weights"):
        loss(out, x_0, x_1, t, weights=torch.ones(6, dtype=torch.long))
    with pytest.raises(TypeError, match="sample"):
        loss.from_sample(out, (x_0, x_1, t))
