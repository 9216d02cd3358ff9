import math

import pytest
import torch
from scipy import stats

from fm_core.path.scheduler import CosineScheduler, VPScheduler
from fm_core.time_sampling import (
    LogitNormalTimeSampler,
    LogNormalSigmaTimeSampler,
    UniformTimeSampler,
)

N = 200_000
QS = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
SAMPLERS = {
    "uniform": UniformTimeSampler,
    "logit_normal": lambda: LogitNormalTimeSampler(0.5, 1.5),
    "edm": LogNormalSigmaTimeSampler,
    "edm_vp": lambda: LogNormalSigmaTimeSampler(scheduler=VPScheduler()),
}


def _draw(sampler, n=N, seed=0):
    return sampler(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _z(q):
    return torch.from_numpy(stats.norm.ppf(q.numpy()))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_shape_dtype_range_and_reproducibility(name):
    sampler = SAMPLERS[name]()
    t = sampler(1000, generator=torch.Generator().manual_seed(3))
    assert t.shape == (1000,) and t.dtype == torch.get_default_dtype()
    assert ((t >= 0) & (t <= 1)).all()
    torch.testing.assert_close(t, sampler(1000, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(t, sampler(1000, generator=torch.Generator().manual_seed(4)))
    assert sampler(0).shape == (0,)
    assert sampler(3, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_uniform_moments():
    t = _draw(UniformTimeSampler())
    assert abs(t.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / N)
    assert abs(t.var().item() - 1 / 12) < 2e-3
    torch.testing.assert_close(torch.quantile(t, QS), QS, atol=5e-3, rtol=0)


def test_logit_normal_quantiles_and_logit_moments():
    loc, scale = 0.5, 1.5
    t = _draw(LogitNormalTimeSampler(loc, scale))
    expected = torch.sigmoid(loc + scale * _z(QS))
    torch.testing.assert_close(torch.quantile(t, QS), expected, atol=5e-3, rtol=0)
    u = torch.logit(t)
    assert abs(u.mean().item() - loc) < 4 * scale / math.sqrt(N)
    assert abs(u.std().item() - scale) < 0.01


def test_lognormal_sigma_condot_mapping():
    p_mean, p_std = -1.2, 1.2
    t = _draw(LogNormalSigmaTimeSampler(p_mean, p_std))
    # t = 1 / (1 + sigma) decreases in sigma: the q-quantile of t is the (1-q)-quantile of sigma.
    expected = 1.0 / (1.0 + torch.exp(p_mean + p_std * _z(1 - QS)))
    torch.testing.assert_close(torch.quantile(t, QS), expected, atol=5e-3, rtol=0)
    log_sigma = torch.log((1 - t) / t)
    assert abs(log_sigma.mean().item() - p_mean) < 4 * p_std / math.sqrt(N)
    assert abs(log_sigma.std().item() - p_std) < 0.01
    assert abs(t.median().item() - torch.sigmoid(torch.tensor(1.2)).item()) < 5e-3


def test_lognormal_sigma_equals_logit_normal_for_condot():
    a = _draw(LogNormalSigmaTimeSampler(-0.7, 0.9), n=1000)
    # Same draws u: sigmoid(0.7 - 0.9 u) = 1 - sigmoid(-0.7 + 0.9 u); equal in law to logit-normal(0.7, 0.9).
    b = _draw(LogitNormalTimeSampler(-0.7, 0.9), n=1000)
    torch.testing.assert_close(a, 1 - b)


def test_lognormal_sigma_with_scheduler_has_lognormal_noise_ratio():
    scheduler = CosineScheduler()
    t = _draw(LogNormalSigmaTimeSampler(0.0, 1.0, scheduler=scheduler), n=50_000)
    c = scheduler(t)
    log_sigma = torch.log(c.sigma_t / c.alpha_t)
    assert abs(log_sigma.mean().item()) < 0.02
    assert abs(log_sigma.std().item() - 1.0) < 0.02


def test_eps_clamps_end_points():
    t = LogitNormalTimeSampler(0.0, 50.0, eps=1e-3)(10_000, dtype=torch.float64)
    assert t.min().item() == 1e-3 and t.max().item() == 1 - 1e-3


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        UniformTimeSampler()(-1)
    with pytest.raises(ValueError, match="batch_size"):
        UniformTimeSampler()(2.0)
    with pytest.raises(TypeError, match="dtype"):
        UniformTimeSampler()(2, dtype=torch.int64)
    with pytest.raises(TypeError, match="generator"):
        UniformTimeSampler()(2, generator=0)
    with pytest.raises(ValueError, match="eps"):
        UniformTimeSampler(eps=0.5)
    with pytest.raises(ValueError, match="scale"):
        LogitNormalTimeSampler(scale=0.0)
    with pytest.raises(ValueError, match="loc"):
        LogitNormalTimeSampler(loc=float("nan"))
    with pytest.raises(ValueError, match="p_std"):
        LogNormalSigmaTimeSampler(p_std=-1.0)
    with pytest.raises(TypeError, match="scheduler"):
        LogNormalSigmaTimeSampler(scheduler="cosine")
