"""Issue 12 §3 for fm-core: every silent wrong result is a clear error or documented behaviour.

One test per class of bad input (likelihood shapes, devices, empty batches, ranges, non-finite
model outputs). Devices are checked against the ``meta`` device, which every build has: a second
device without a GPU. The value-check rules are in docs/fm-core/validation.md.
"""

from __future__ import annotations

import math

import pytest
import torch

from fm_core import (
    AffineProbPath,
    CondOTProbPath,
    CondOTScheduler,
    EulerMaruyamaSolver,
    ExactOTCoupling,
    FlowMatchingLoss,
    LinearVPScheduler,
    ODESolver,
    SinkhornOTCoupling,
    VPScheduler,
)
from fm_core.utils import value_checks


def _log_p0(x):
    return -0.5 * x.pow(2).sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)


# ------------------------------------------------------------------ likelihood shapes
@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (lambda x: _log_p0(x)[:, None], r"shape \[B\] = \[4\], got \(4, 1\)"),  # was [B, B]
        (lambda x: _log_p0(x).sum(), r"shape \[B\] = \[4\], got \(\)"),  # was broadcast
        (lambda x: x.pow(2).sum(-1).long(), "floating tensor"),
    ],
)
@pytest.mark.parametrize("method", ["compute_likelihood", "sample_with_likelihood"])
def test_log_p0_must_return_shape_b(bad, match, method):
    solver = ODESolver(lambda x, t: -x)
    x = torch.randn(4, 2)
    with pytest.raises((ValueError, TypeError), match=match):
        getattr(solver, method)(x, bad, step_size=0.25, exact_divergence=True)
    _, log_p = getattr(solver, method)(x, _log_p0, step_size=0.25, exact_divergence=True)
    assert log_p.shape == (4,)


# ------------------------------------------------------------------ devices
def test_device_mismatch_names_the_argument_and_both_devices():
    path = CondOTProbPath()
    x, m = torch.zeros(3, 2), torch.zeros(3, 2, device="meta")
    t = torch.rand(3)
    with pytest.raises(ValueError, match="x_1 is on meta but x_0 is on cpu"):
        path.sample(x, m, t)
    with pytest.raises(ValueError, match="t is on meta but x_0 is on cpu"):
        path.sample(x, x, t.to("meta"))
    with pytest.raises(ValueError, match="velocity is on meta but x_t is on cpu"):
        path.velocity_to_epsilon(m, x, t)
    with pytest.raises(ValueError, match="x_0 is on meta but model_output is on cpu"):
        FlowMatchingLoss(path)(x, m, x, t)
    with pytest.raises(ValueError, match="weights is on meta but model_output is on cpu"):
        FlowMatchingLoss(path)(x, x, x, t, weights=torch.ones(3, device="meta"))
    with pytest.raises(ValueError, match="x_1 is on meta but x_0 is on cpu"):
        ExactOTCoupling()(x, m)


# ------------------------------------------------------------------ empty batches
def test_empty_batch_is_one_error_everywhere():
    """The rule (docs/fm-core/validation.md): B = 0 raises, naming the argument."""
    e, t = torch.zeros(0, 2), torch.zeros(0)
    path = CondOTProbPath()
    calls = {
        "x_0": lambda: path.sample(e, e, t),
        "model_output": lambda: FlowMatchingLoss(path)(e, e, e, t),
        "x_init": lambda: ODESolver(lambda x, t: x).sample(e, step_size=0.5),
        "x_1": lambda: ODESolver(lambda x, t: x).compute_likelihood(e, _log_p0, step_size=0.5),
    }
    calls["x_0 "] = lambda: ExactOTCoupling()(e, e)  # was a raw SciPy/torch error
    calls["x_0  "] = lambda: SinkhornOTCoupling()(e, e)
    calls["x_init "] = lambda: EulerMaruyamaSolver(lambda x, t: x, path).sample(e, 0.5)
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"{name.strip()} must hold at least one sample"):
            call()


# ------------------------------------------------------------------ ranges
@pytest.mark.parametrize(
    "make",
    [
        lambda: VPScheduler(eps=-1),
        lambda: VPScheduler(eps=1.5),
        lambda: LinearVPScheduler(eps=0),
        lambda: LinearVPScheduler(eps=float("nan")),
    ],
)
def test_scheduler_eps_must_lie_in_the_open_unit_interval(make):
    with pytest.raises(ValueError, match=r"eps must lie in \(0, 1\)"):
        make()


@pytest.mark.parametrize("t_eps", [0.7, 0.5, 0.0, -1e-3])
def test_euler_maruyama_t_eps_range(t_eps):
    solver = EulerMaruyamaSolver(lambda x, t: -x, AffineProbPath(VPScheduler()))
    with pytest.raises(ValueError, match="t_eps must lie in"):
        solver.sample(torch.randn(3, 2), step_size=0.5, t_eps=t_eps)


@pytest.mark.parametrize("scheduler", [VPScheduler(), LinearVPScheduler()], ids=repr)
def test_vp_gradient_in_t_is_finite_at_one(scheduler):
    """Was NaN (inf * 0 through the sqrt); now the scheduler's own guarded d_sigma_t."""
    t = torch.tensor([0.0, 0.3, 1.0 - 1e-6, 1.0], dtype=torch.float64, requires_grad=True)
    out = scheduler(t)
    (grad,) = torch.autograd.grad(out.sigma_t.sum(), t)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, out.d_sigma_t.detach())
    assert out.sigma_t[-1].item() == 0.0  # the value itself stays exact
    path = AffineProbPath(scheduler)
    x = torch.randn(4, 3, dtype=torch.float64)
    (g2,) = torch.autograd.grad(path.sample(x, x.flip(0), t).x_t.sum(), t)
    assert torch.isfinite(g2).all()


# ------------------------------------------------------------------ non-finite model output
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("method", ["euler", "midpoint", "dopri5"])
def test_non_finite_model_output_is_an_error_in_eager_cpu_mode(bad, method):
    def model(x, t):
        return torch.where(t > 0.4, torch.full_like(x, bad), -x)

    solver = ODESolver(model)
    x = torch.randn(3, 2)
    if method == "dopri5":  # the adaptive method sees it in its error norm (a host read anyway)
        with pytest.raises(FloatingPointError, match="the model output is not finite"):
            solver.sample(x, step_size=None, method=method)
        return
    with pytest.raises(ValueError, match="the sample holds 6 non-finite value"):
        solver.sample(x, step_size=0.1, method=method)
    with value_checks("off"):  # documented: unchecked results come back as they are
        out = solver.sample(x, step_size=0.1)
    assert not torch.isfinite(out).any()


def test_non_finite_likelihood_is_an_error():
    solver = ODESolver(lambda x, t: torch.where(t < 0.5, x * float("inf"), -x))
    with pytest.raises(ValueError, match="non-finite"):
        solver.compute_likelihood(torch.randn(3, 2), _log_p0, step_size=0.25)


def test_finiteness_check_is_compiled_out():
    solver = ODESolver(lambda x, t: x * float("nan"))
    compiled = torch.compile(
        lambda x: solver.sample(x, step_size=None, time_grid=[0.0, 0.5]),
        fullgraph=True,
        backend="aot_eager",
    )
    assert torch.isnan(compiled(torch.randn(2, 2))).all()


def test_affine_converters_still_accept_a_scalar_time():
    path = AffineProbPath(CondOTScheduler())
    x = torch.randn(2, 3)
    out = path.target_to_velocity(x, x * 0.5, torch.tensor(0.5))
    assert out.shape == (2, 3)


def test_zero_dim_cpu_time_is_accepted_with_data_on_another_device():
    """torch combines 0-dim CPU tensors with tensors on any device; so does the device check."""
    path = CondOTProbPath()
    x = torch.zeros(2, 3, device="meta")
    assert path.target_to_velocity(x, x, torch.tensor(0.5)).device.type == "meta"
    with pytest.raises(ValueError, match="t is on cpu but x_t is on meta"):
        path.target_to_velocity(x, x, torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize(
    "coupling", [ExactOTCoupling(), SinkhornOTCoupling()], ids=["exact", "sinkhorn"]
)
def test_non_finite_points_in_a_coupling_name_the_arguments(coupling):
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="the cost between x_0 and x_1 holds 9 non-finite"):
        coupling(torch.full((3, 2), float("nan")), x)  # was SciPy's "invalid numeric entries"
