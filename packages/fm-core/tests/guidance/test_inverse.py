"""ΠGDM posterior sampling against the closed-form posterior of a Gaussian prior."""

from __future__ import annotations

import pytest
import torch

from fm_core import CondOTScheduler, ODESolver
from fm_core.guidance import PiGDMGuidedModel
from fm_core.testing import GaussianFlow

F64 = torch.float64
N = 4000


def _posterior(mu, s, M, y, sy):
    cov = torch.linalg.inv(torch.eye(mu.numel(), dtype=F64) / s**2 + M.T @ M / sy**2)
    return cov @ (mu / s**2 + M.T @ y / sy**2), cov


def _sample(guided, dim, steps=25):
    x0 = torch.randn(N, dim, dtype=F64, generator=torch.Generator().manual_seed(1))
    return ODESolver(guided).sample(x0, step_size=1 / steps, method="midpoint")


@pytest.fixture
def problem():
    torch.manual_seed(0)
    mu, s = torch.tensor([0.5, -1.0, 0.0, 1.0], dtype=F64), 0.7
    M = torch.randn(2, 4, dtype=F64)
    return mu, s, M, torch.tensor([1.0, -0.5], dtype=F64), 0.2


def test_gaussian_prior_gives_the_exact_posterior(problem):
    """With prior_std = s ΠGDM's Gaussian approximation is exact: the ODE samples the posterior.
    Tolerances: 4 Monte-Carlo standard errors (posterior sd <= 0.6, 4000 samples: 0.038 on the
    mean; 0.025 on covariance entries, se ~0.006); measured 0.0096 and 0.0056 at 25 midpoint
    steps, the same at 100 (the ODE's discretisation error is below the noise)."""
    mu, s, M, y, sy = problem
    mean, cov = _posterior(mu, s, M, y, sy)
    guided = PiGDMGuidedModel(
        GaussianFlow(mu, s).double(), CondOTScheduler(), lambda x: x @ M.T, y.expand(N, 2), sy,
        prior_std=s, t_min=1e-3, cg_iters=2,
    )  # fmt: skip
    x = _sample(guided, 4)
    assert (x.mean(0) - mean).abs().max() < 0.038
    assert (torch.cov(x.T) - cov).abs().max() < 0.025
    # the measured coordinates move from the prior's mean: the test can fail
    assert (mu - mean).abs().max() > 0.3


def test_prior_std_mismatch_is_the_documented_bias(problem):
    # Pokle et al.'s r_t (prior_std = 1) on data with sd 0.7: the mean is biased (0.056 measured)
    mu, s, M, y, sy = problem
    mean, _ = _posterior(mu, s, M, y, sy)
    guided = PiGDMGuidedModel(
        GaussianFlow(mu, s).double(), CondOTScheduler(), lambda x: x @ M.T, y.expand(N, 2), sy,
        t_min=1e-3, cg_iters=2,
    )  # fmt: skip
    err = (_sample(guided, 4).mean(0) - mean).abs().max()
    assert 0.03 < err < 0.1


def test_inpainting_mask_operator():
    # A = x * mask: observed coordinates get the 1-D posterior, hidden ones keep the prior
    mu, s, sy = torch.tensor([0.5, -1.0, 0.0], dtype=F64), 0.7, 0.1
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    y = torch.tensor([1.0, 0.0, -0.4], dtype=F64) * mask
    guided = PiGDMGuidedModel(
        GaussianFlow(mu, s).double(), CondOTScheduler(), lambda x: x * mask, y.expand(N, 3), sy,
        prior_std=s, t_min=1e-3, cg_iters=1,
    )  # fmt: skip
    x = _sample(guided, 3)
    mean, cov = _posterior(mu, s, torch.diag(mask), y, sy)
    assert (x.mean(0) - mean).abs().max() < 0.04
    torch.testing.assert_close(x.var(0), cov.diag(), atol=0.02, rtol=0.0)
    # observed pixels are kept within the noise level
    assert ((x - y) * mask).pow(2).mean(0).sqrt().max() < sy


def test_bad_input():
    flow, sch, y = GaussianFlow(torch.zeros(2), 1.0), CondOTScheduler(), torch.zeros(4, 2)
    with pytest.raises(TypeError, match="operator"):
        PiGDMGuidedModel(flow, sch, "A", y, 0.1)
    with pytest.raises(ValueError, match="noise_std"):
        PiGDMGuidedModel(flow, sch, lambda x: x, y, 0.0)
    with pytest.raises(ValueError, match="t_min"):
        PiGDMGuidedModel(flow, sch, lambda x: x, y, 0.1, t_min=0.0)
    guided = PiGDMGuidedModel(flow, sch, lambda x: x[:, :1], y, 0.1)
    with pytest.raises(ValueError, match="measurement"):
        guided(torch.zeros(4, 2), torch.tensor(0.5))


def test_temperature_scales_the_exact_posterior_covariance(problem):
    """Gaussian prior, t0 = 0: x_1 is affine in x_0, so temperature tau samples N(m, tau^2 C)
    exactly; tau = 0 lands on the posterior mean (= its mode). Tolerances as above, the
    covariance's scaled by tau^2 (measured 0.0048 / 0.0014 at tau = 0.5; 9e-5 at tau = 0)."""
    mu, s, M, y, sy = problem
    mean, cov = _posterior(mu, s, M, y, sy)
    guided = PiGDMGuidedModel(
        GaussianFlow(mu, s).double(), CondOTScheduler(), lambda x: x @ M.T, y.expand(N, 2), sy,
        prior_std=s, t_min=1e-3, cg_iters=2,
    )  # fmt: skip
    x0 = torch.randn(N, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    x = guided.sample(x0, steps=25, temperature=0.5)
    assert (x.mean(0) - mean).abs().max() < 0.02
    assert (torch.cov(x.T) - 0.25 * cov).abs().max() < 0.01
    # tau = 1 would be 4x this covariance: the test can fail
    assert (cov - 0.25 * cov).abs().max() > 0.05
    guided.measurement = y.expand(8, 2)
    x = guided.sample(x0[:8], steps=25, temperature=0.0)
    assert (x - mean).abs().max() < 2e-3


class _Spy(torch.nn.Module):
    """A zero velocity that records where it is first evaluated."""

    def forward(self, x, t):
        if not hasattr(self, "first"):
            self.first = (x.detach().clone(), float(t))
        return 0.0 * x


def test_start_time_starts_from_the_noised_measurement():
    # Pokle et al.'s start: x_t0 = t0 * A^T y + (1 - t0) * tau * x_0 (CondOT), at time t0
    mask = torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    y = torch.tensor([[0.8, 0.0, -0.4]], dtype=F64)
    spy = _Spy()
    guided = PiGDMGuidedModel(spy, CondOTScheduler(), lambda x: x * mask, y, 0.1)
    x0 = torch.tensor([[1.0, -2.0, 0.5]], dtype=F64)
    guided.sample(x0, steps=4, method="euler", start_time=0.25, temperature=0.5)
    x_start, t_start = spy.first
    assert t_start == 0.25
    torch.testing.assert_close(x_start, 0.25 * y + 0.75 * 0.5 * x0)
    # an explicit init replaces A^T y
    spy = _Spy()
    guided = PiGDMGuidedModel(spy, CondOTScheduler(), lambda x: x * mask, y, 0.1)
    guided.sample(x0, steps=1, method="euler", start_time=0.5, init=torch.ones(1, 3, dtype=F64))
    torch.testing.assert_close(spy.first[0], 0.5 * torch.ones(1, 3, dtype=F64) + 0.5 * x0)


def test_sample_bad_input():
    flow, sch, y = GaussianFlow(torch.zeros(2), 1.0), CondOTScheduler(), torch.zeros(4, 2)
    guided = PiGDMGuidedModel(flow, sch, lambda x: x, y, 0.1)
    x0 = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="start_time"):
        guided.sample(x0, start_time=1.0)
    with pytest.raises(ValueError, match="temperature"):
        guided.sample(x0, temperature=-0.5)
    with pytest.raises(ValueError, match="steps"):
        guided.sample(x0, steps=0)
    with pytest.raises(ValueError, match="init"):
        guided.sample(x0, start_time=0.2, init=torch.zeros(4, 3))
    for bad in (float("inf"), True):
        with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
            guided.sample(x0, temperature=bad)
    # the start's A^T y with a measurement of the wrong shape: the clear message, not autograd's
    narrow = PiGDMGuidedModel(flow, sch, lambda x: x[:, :1], y, 0.1)
    with pytest.raises(ValueError, match=r"operator\(x\) has shape \(4, 1\) but measurement"):
        narrow.sample(x0, start_time=0.2)
