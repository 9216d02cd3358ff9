"""MeanFlowLoss: closed-form truths on Gaussian -> Gaussian CondOT, the JVP against finite
differences, guidance folded into training, the compile contract and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fm_core import CondOTProbPath, FlowMapSolver, MeanFlowLoss, TimePairSampler
from fm_core.testing import (
    GaussianFlow,
    GaussianFlowMap,
    compile_fullgraph,
    fresh_dynamo,  # noqa: F401 (autouse fixture)
)

MU = torch.tensor([1.5, -0.5], dtype=torch.float64)
S = 0.6


class _Net(nn.Module):
    """A small smooth flow-map network, labels optional."""

    def __init__(self, dim: int = 2, classes: int = 0):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(dim + 2, 32), nn.Tanh(), nn.Linear(32, dim))
        self.emb = nn.Embedding(classes + 1, dim + 2) if classes else None

    def forward(self, x, t, r, label=None):
        b = x.shape[0]
        t = t.expand(b) if t.ndim == 0 else t
        r = r.expand(b) if r.ndim == 0 else r
        h = torch.cat([x, t[:, None].to(x.dtype), (r - t)[:, None].to(x.dtype)], -1)
        if self.emb is not None:
            h = h + self.emb(label).to(x.dtype)
        return self.body(h)


def _batch(n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x_0 = torch.randn(n, 2, generator=g, dtype=dtype)
    x_1 = MU.to(dtype) + S * torch.randn(n, 2, generator=g, dtype=dtype)
    t, r = TimePairSampler(equal_fraction=0.25)(n, dtype=dtype, generator=g)
    return x_0, x_1, t, r


def test_closed_form_average_velocity_is_the_flow_map():
    """u(x, t, r) of GaussianFlowMap jumps exactly along GaussianFlow's flow, and u(x, t, t) = v."""
    fmap, flow = GaussianFlowMap(MU, S), GaussianFlow(MU, S)
    x_0 = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x_t = flow.flow(x_0, 0.3)
        u = fmap(
            x_t, torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64)
        )
        torch.testing.assert_close(x_t + 0.5 * u, flow.flow(x_0, 0.8))
        t = torch.tensor(0.4, dtype=torch.float64)
        torch.testing.assert_close(fmap(x_t, t, t), flow(x_t, t))


@pytest.mark.parametrize("variant", ["meanflow", "imf"])
def test_loss_is_a_fixed_point_at_the_truth(variant):
    """The exact average velocity zeroes the expected loss gradient (adaptive weights off): the
    MeanFlow target's conditional mean is the marginal one, so the truth is a stationary point."""
    fmap = GaussianFlowMap(MU, S)
    loss_fn = MeanFlowLoss(variant=variant, adaptive_power=0.0)
    x_0, x_1, t, r = _batch(200_000)
    loss_fn(fmap, x_0, x_1, t, r).backward()
    grads = torch.cat([fmap.mu.grad, fmap.log_s.grad[None]])
    assert grads.abs().max() < 0.01, grads
    # and it is not vacuous: a perturbed model has a clear gradient
    wrong = GaussianFlowMap(MU + 0.3, S * 1.3)
    loss_fn(wrong, x_0, x_1, t, r).backward()
    assert wrong.mu.grad.abs().min() > 0.05


@pytest.mark.parametrize("variant", ["meanflow", "imf"])
def test_minimiser_recovers_the_target_and_its_one_step_map(variant):
    """Fitting the closed-form family from a wrong start recovers mu and s, and its one-step
    sample has the target's moments (adaptive weighting on, as published)."""
    torch.manual_seed(0)
    fmap = GaussianFlowMap(torch.zeros(2, dtype=torch.float64), 1.5)
    opt = torch.optim.Adam(fmap.parameters(), lr=0.08)
    loss_fn = MeanFlowLoss(variant=variant)
    for step in range(80):
        x_0, x_1, t, r = _batch(1024, seed=step)
        opt.zero_grad()
        loss_fn(fmap, x_0, x_1, t, r).backward()
        opt.step()
    torch.testing.assert_close(fmap.mu.detach(), MU, atol=0.06, rtol=0)
    assert abs(fmap.log_s.exp().item() - S) < 0.05
    with torch.no_grad():
        z = torch.randn(20_000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
        x = FlowMapSolver(fmap).sample(z)
    torch.testing.assert_close(x.mean(0), MU, atol=0.08, rtol=0)
    torch.testing.assert_close(
        x.std(0), torch.full((2,), S, dtype=torch.float64), atol=0.06, rtol=0
    )


def _manual_meanflow(model, x_0, x_1, t, r, v_tilde, h=1e-5):
    """The MeanFlow per-sample squared error with du/dt by central finite differences."""
    path = CondOTProbPath()
    x_t = path.sample(x_0, x_1, t).x_t
    with torch.no_grad():
        up = model(x_t + h * v_tilde, t + h, r)
        down = model(x_t - h * v_tilde, t - h, r)
        dudt = (up - down) / (2 * h)
        u = model(x_t, t, r)
    target = v_tilde - (t - r)[:, None] * dudt
    return (u - target).square().mean(1)


def test_jvp_target_equals_finite_differences():
    model = _Net().double()
    x_0, x_1, t, r = _batch(32, seed=3)
    t, r = t.clamp(1e-3, 0.99), r.clamp(1e-3, 0.99)
    r = torch.maximum(r, t)
    got = MeanFlowLoss(adaptive_power=0.0, reduction="none")(model, x_0, x_1, t, r)
    want = _manual_meanflow(model, x_0, x_1, t, r, x_1 - x_0)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)


def test_guidance_folded_into_training_and_adaptive_weights():
    """Labelled samples regress on (1 + w) v - w u(x_t, t, t | null); null-labelled ones on v;
    the adaptive weight divides by (delta + c)^p."""
    model = _Net(classes=3).double()
    x_0, x_1, t, r = _batch(16, seed=4)
    labels = torch.tensor([0, 1, 2, 3] * 4)  # 3 is the null label
    w, c, p = 0.7, 1e-2, 0.5
    loss_fn = MeanFlowLoss(
        guidance_scale=w, null_label=3, adaptive_power=p, adaptive_eps=c, reduction="none"
    )
    got = loss_fn(model, x_0, x_1, t, r, label=labels)
    x_t = CondOTProbPath().sample(x_0, x_1, t).x_t
    with torch.no_grad():
        u_null = model(x_t, t, t, label=torch.full_like(labels, 3))
    v = x_1 - x_0
    v_tilde = torch.where((labels != 3)[:, None], (1 + w) * v - w * u_null, v)
    delta = _manual_meanflow(lambda x, t_, r_: model(x, t_, r_, label=labels), x_0, x_1, t, r,
                             v_tilde)  # fmt: skip
    torch.testing.assert_close(got, delta / (delta + c) ** p, rtol=1e-6, atol=1e-9)


def test_equal_pairs_reduce_to_flow_matching():
    model = _Net().double()
    x_0, x_1, t, _ = _batch(16, seed=5)
    loss = MeanFlowLoss(adaptive_power=0.0, reduction="none")(model, x_0, x_1, t, t)
    x_t = CondOTProbPath().sample(x_0, x_1, t).x_t
    with torch.no_grad():
        want = (model(x_t, t, t) - (x_1 - x_0)).square().mean(1)
    torch.testing.assert_close(loss.detach(), want)


@pytest.mark.parametrize("variant", ["meanflow"])  # imf differs only in eager-checked inputs
def test_training_step_compiles_fullgraph_and_matches_eager(variant):
    model = _Net(classes=3)
    loss_fn = MeanFlowLoss(variant=variant, guidance_scale=0.5, null_label=3)

    def step(x_0, x_1, t, r, label):
        return loss_fn(model, x_0, x_1, t, r, label=label)

    x_0, x_1, t, r = _batch(8, seed=6, dtype=torch.float32)
    label = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loss = step(x_0, x_1, t, r, label)
    loss.backward()
    eager = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    model.zero_grad()
    loss = compile_fullgraph(step)(x_0, x_1, t, r, label)
    loss.backward()
    torch.testing.assert_close(loss.detach(), eager[0])
    for p, g in zip(model.parameters(), eager[1]):
        torch.testing.assert_close(p.grad, g)


class _Counting(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x, t, r):
        self.calls += 1
        return x


def test_bad_input_fails_before_any_model_call():
    model = _Counting()
    loss_fn = MeanFlowLoss()
    x = torch.randn(4, 2)
    t = torch.full((4,), 0.5)
    with pytest.raises(ValueError, match="r must be >= t"):
        loss_fn(model, x, x, t, t - 0.1)
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        loss_fn(model, x, x, t + 0.7, t + 0.8)
    with pytest.raises(ValueError, match=r"r must lie in \[0.0, 1.0\]"):
        loss_fn(model, x, x, t, t + 0.6)
    with pytest.raises(ValueError, match=r"r must have shape \[batch_size\]"):
        loss_fn(model, x, x, t, t[:3])
    with pytest.raises(ValueError, match="needs null_label"):
        MeanFlowLoss(guidance_scale=1.0)(model, x, x, t, t, label=torch.zeros(4))
    with pytest.raises(ValueError, match="needs the labels"):
        MeanFlowLoss(guidance_scale=1.0, null_label=10)(model, x, x, t, t)
    assert model.calls == 0
    with pytest.raises(TypeError, match="keyword argument r"):
        loss_fn(lambda x, t: x, x, x, t, t)
    with pytest.raises(ValueError, match="variant"):
        MeanFlowLoss(variant="shortcut")
    with pytest.raises(ValueError, match="adaptive_power"):
        MeanFlowLoss(adaptive_power=-1)
