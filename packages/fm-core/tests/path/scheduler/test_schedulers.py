import math

import pytest
import torch

from fm_core.path.scheduler import (
    CondOTScheduler,
    CosineScheduler,
    LinearVPScheduler,
    PolynomialConvexScheduler,
    VPScheduler,
)
from fm_core.testing import ConvexSchedulerTests, SchedulerTests


class TestCondOT(ConvexSchedulerTests):
    @pytest.fixture
    def scheduler(self):
        return CondOTScheduler()

    def test_values(self, scheduler):
        out = scheduler(torch.tensor([0.3]))
        torch.testing.assert_close(out.alpha_t, torch.tensor([0.3]))
        torch.testing.assert_close(out.sigma_t, torch.tensor([0.7]))


@pytest.mark.parametrize("n", [0.5, 1, 2, 3.5])
class TestPolynomial(ConvexSchedulerTests):
    @pytest.fixture
    def scheduler(self, n):
        return PolynomialConvexScheduler(n)

    def test_values(self, scheduler, n):
        t = torch.tensor([0.2, 0.7], dtype=torch.float64)
        torch.testing.assert_close(scheduler(t).alpha_t, t**n)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "2", True])
def test_polynomial_rejects_bad_exponent(bad):
    with pytest.raises(ValueError, match="n must be a positive number"):
        PolynomialConvexScheduler(bad)


class TestVP(SchedulerTests):
    exact_source = False
    guarded_end = True

    @pytest.fixture
    def scheduler(self):
        return VPScheduler()

    def test_variance_preserving(self, scheduler):
        out = scheduler(torch.linspace(0, 1, 101, dtype=torch.float64))
        torch.testing.assert_close(
            out.alpha_t**2 + out.sigma_t**2, torch.ones(101, dtype=torch.float64)
        )

    def test_source_value_matches_formula(self, scheduler):
        # T(0) = 0.5 * (20 - 0.1) + 0.1 = 10.05
        alpha0 = scheduler(torch.tensor([0.0], dtype=torch.float64)).alpha_t
        torch.testing.assert_close(
            alpha0, torch.tensor([math.exp(-0.5 * 10.05)], dtype=torch.float64)
        )

    def test_guarded_derivative_at_one_is_finite_and_large(self, scheduler):
        d = scheduler(torch.tensor([1.0], dtype=torch.float64)).d_sigma_t
        assert torch.isfinite(d).all() and d.item() < -10

    def test_rejects_bad_betas(self):
        with pytest.raises(ValueError, match="beta_max must exceed beta_min"):
            VPScheduler(beta_min=1.0, beta_max=0.5)
        with pytest.raises(ValueError, match="beta_min must be positive"):
            VPScheduler(beta_min=0.0)


class TestLinearVP(SchedulerTests):
    guarded_end = True

    @pytest.fixture
    def scheduler(self):
        return LinearVPScheduler()


class TestCosine(SchedulerTests):
    @pytest.fixture
    def scheduler(self):
        return CosineScheduler()

    def test_sigma_is_exactly_zero_at_one(self, scheduler):
        assert scheduler(torch.tensor([1.0])).sigma_t.item() == 0.0
