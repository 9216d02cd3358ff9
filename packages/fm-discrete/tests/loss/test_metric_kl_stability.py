"""The metric path's generalized KL stays finite for confident wrong posteriors; the batched
rates of small vocabularies equal the per-row loop's."""

from __future__ import annotations

import pytest
import torch

import fm_discrete.path.metric as metric_module
from fm_discrete import MetricDiscreteProbPath, MetricPathGeneralizedKL, PolynomialBetaSchedule

V = 17


def _pixel_path():
    levels = torch.arange(float(V)).unsqueeze(-1) / (V - 1)
    return MetricDiscreteProbPath.from_embeddings(levels, PolynomialBetaSchedule(10.0))


def _batch(path, g, n=64, length=16):
    x_1 = torch.randint(0, V, (n, length), generator=g)
    t = torch.rand(n, generator=g)
    return x_1, path.sample(torch.randint(0, V, (n, length), generator=g), x_1, t, generator=g)


def test_confident_wrong_logits_give_a_finite_loss_and_gradient():
    """float32 rates p_t(x | y) p(y) underflow to 0 where the target rate is not: before the
    log-space rates this loss was inf (NaN weights after one step of training)."""
    path, g = _pixel_path(), torch.Generator().manual_seed(0)
    x_1, s = _batch(path, g)
    logits = (torch.randn(*x_1.shape, V, generator=g) * 100.0).requires_grad_()
    loss = MetricPathGeneralizedKL(path, reduction="none")(logits, x_1, s.x_t, s.t)
    assert torch.isfinite(loss).all() and loss.min() > -1e-3  # >= 0 up to float32 rounding
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_log_space_loss_equals_the_rates_of_posterior_to_velocity():
    """Where nothing underflows (float64, moderate logits) the loss is the Bregman divergence of
    the rates that posterior_to_velocity gives."""
    path, g = _pixel_path(), torch.Generator().manual_seed(1)
    x_1, s = _batch(path, g, n=8, length=5)
    t = s.t.double().clamp(max=0.9)
    logits = torch.randn(*x_1.shape, V, generator=g, dtype=torch.float64)
    target = path.conditional_velocity(s.x_t, x_1, t)
    model = path.posterior_to_velocity(logits, s.x_t, t)
    off = torch.ones_like(target, dtype=torch.bool).scatter_(-1, s.x_t.unsqueeze(-1), False)
    u_c, u_m = target.where(off, 0.0), model.where(off, 0.0)
    pos = u_c > 0
    log_term = torch.where(pos, u_c * (u_c.where(pos, 1.0).log() - u_m.where(pos, 1.0).log()), 0)
    expected = (log_term - u_c + u_m).sum(-1)
    ours = MetricPathGeneralizedKL(path, reduction="none")(logits, x_1, s.x_t, t)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_small_vocabulary_rates_equal_the_row_loop(monkeypatch, dtype):
    path, g = _pixel_path(), torch.Generator().manual_seed(2)
    post = torch.softmax(torch.randn(6, 10, V, generator=g, dtype=dtype), -1)
    x_t, t = torch.randint(0, V, (6, 10), generator=g), torch.rand(6, generator=g)
    batched = path.posterior_probs_to_velocity(post, x_t, t)
    monkeypatch.setattr(metric_module, "_BLOCK_ELEMENTS", 10 * V * V)  # one row per block
    looped = path.posterior_probs_to_velocity(post, x_t, t)
    torch.testing.assert_close(batched, looped, rtol=1e-5 if dtype == torch.float32 else 1e-12,
                               atol=0.0)  # fmt: skip
    assert torch.allclose(batched.sum(-1), torch.zeros((), dtype=dtype), atol=1e-3)
