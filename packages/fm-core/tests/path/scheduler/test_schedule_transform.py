import pytest
import torch
from torch import nn

from fm_core.path import AffineProbPath
from fm_core.path.scheduler import (
    CondOTScheduler,
    CosineScheduler,
    LinearVPScheduler,
    PolynomialConvexScheduler,
    ScheduleTransformedModel,
    VPScheduler,
)


class GaussianVelocity(nn.Module):
    """Exact marginal velocity of an affine path from N(0, I) to N(mu, s^2 I)."""

    def __init__(self, scheduler, mu, s):
        super().__init__()
        self.scheduler, self.mu, self.s = scheduler, mu, s

    def forward(self, x, t):
        c = self.scheduler(t.reshape(-1, *[1] * (x.ndim - 1)) if t.ndim else t)
        var = c.sigma_t**2 + (c.alpha_t * self.s) ** 2
        d_var = 2 * c.sigma_t * c.d_sigma_t + 2 * c.alpha_t * c.d_alpha_t * self.s**2
        mean, d_mean = c.alpha_t * self.mu, c.d_alpha_t * self.mu
        return d_mean + 0.5 * d_var / var * (x - mean)


@pytest.mark.parametrize(
    "new", [CosineScheduler, LinearVPScheduler, lambda: PolynomialConvexScheduler(2), VPScheduler]
)
def test_transformed_velocity_equals_true_velocity_of_new_path(new):
    """Gaussian to Gaussian: the exact velocity under one schedule, transformed, is the exact one under another."""
    mu, s = 1.5, 0.5
    old_s, new_s = CondOTScheduler(), new()
    transformed = ScheduleTransformedModel(GaussianVelocity(old_s, mu, s), old_s, new_s)
    x = torch.randn(16, 3, dtype=torch.float64)
    for t in (0.1, 0.4, 0.8):
        tt = torch.full((16,), t, dtype=torch.float64)
        torch.testing.assert_close(
            transformed(x=x, t=tt), GaussianVelocity(new_s, mu, s)(x, tt), rtol=1e-6, atol=1e-6
        )


def test_scalar_time_is_accepted():
    old_s, new_s = CondOTScheduler(), CosineScheduler()
    m = ScheduleTransformedModel(GaussianVelocity(old_s, 0.0, 1.0), old_s, new_s)
    assert m(x=torch.randn(4, 2, 3, 3), t=torch.tensor(0.3)).shape == (4, 2, 3, 3)


def test_rejects_non_scheduler():
    with pytest.raises(TypeError, match="new_scheduler must be a fm_core Scheduler"):
        ScheduleTransformedModel(
            nn.Identity(), CondOTScheduler(), AffineProbPath(CondOTScheduler())
        )
