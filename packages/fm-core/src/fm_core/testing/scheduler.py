"""Properties every ``Scheduler`` must have. Subclass and set ``scheduler``."""

from __future__ import annotations

import pytest
import torch

from fm_core.path.scheduler.scheduler import ConvexScheduler, Scheduler, SchedulerOutput

__all__ = ["ConvexSchedulerTests", "SchedulerTests"]


class SchedulerTests:
    """Shared tests for schedulers.

    Subclass as ``class TestMine(SchedulerTests)`` and provide the ``scheduler`` fixture.

    Attributes:
        exact_source: whether $\\alpha_0 = 0, \\sigma_0 = 1$ holds (False for ``VPScheduler``).
        guarded_end: whether derivatives are guarded near $t=1$ (FD check stays away from 1).
    """

    exact_source: bool = True
    guarded_end: bool = False

    @pytest.fixture
    def scheduler(self) -> Scheduler:
        raise NotImplementedError("subclasses provide the scheduler fixture")

    def test_output_type_and_shape(self, scheduler):
        t = torch.rand(7, 3, dtype=torch.float64)
        out = scheduler(t)
        assert isinstance(out, SchedulerOutput)
        for v in (out.alpha_t, out.sigma_t, out.d_alpha_t, out.d_sigma_t):
            assert v.shape == t.shape and v.dtype == t.dtype

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_finite_on_closed_interval(self, scheduler, dtype):
        t = torch.linspace(0, 1, 1001, dtype=dtype)
        out = scheduler(t)
        for name in ("alpha_t", "sigma_t", "d_alpha_t", "d_sigma_t"):
            assert torch.isfinite(getattr(out, name)).all(), name

    def test_end_points(self, scheduler):
        out = scheduler(torch.tensor([0.0, 1.0], dtype=torch.float64))
        torch.testing.assert_close(out.alpha_t[1], torch.tensor(1.0, dtype=torch.float64))
        torch.testing.assert_close(out.sigma_t[1], torch.tensor(0.0, dtype=torch.float64))
        if self.exact_source:
            torch.testing.assert_close(out.alpha_t[0], torch.tensor(0.0, dtype=torch.float64))
            torch.testing.assert_close(out.sigma_t[0], torch.tensor(1.0, dtype=torch.float64))

    def test_derivatives_match_finite_differences(self, scheduler):
        high = 0.99 if self.guarded_end else 0.999
        t = torch.linspace(0.01, high, 200, dtype=torch.float64)
        h = 1e-6
        plus, minus, out = scheduler(t + h), scheduler(t - h), scheduler(t)
        for value, deriv in (("alpha_t", "d_alpha_t"), ("sigma_t", "d_sigma_t")):
            fd = (getattr(plus, value) - getattr(minus, value)) / (2 * h)
            torch.testing.assert_close(getattr(out, deriv), fd, rtol=1e-5, atol=1e-6)

    def test_snr_increases(self, scheduler):
        out = scheduler(torch.linspace(0.01, 0.99, 99, dtype=torch.float64))
        snr = out.alpha_t / out.sigma_t
        assert (snr.diff() > 0).all()

    def test_snr_inverse_round_trip(self, scheduler):
        t = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)
        out = scheduler(t)
        torch.testing.assert_close(scheduler.snr_inverse(out.alpha_t / out.sigma_t), t)

    def test_snr_inverse_at_infinity_is_one(self, scheduler):
        t = scheduler.snr_inverse(torch.tensor([float("inf")], dtype=torch.float64))
        torch.testing.assert_close(t, torch.tensor([1.0], dtype=torch.float64))

    def test_integer_time_is_rejected(self, scheduler):
        with pytest.raises(TypeError, match="t must be a floating-point tensor"):
            scheduler(torch.tensor([0, 1]))


class ConvexSchedulerTests(SchedulerTests):
    """``SchedulerTests`` plus the properties of convex schedulers ($\\alpha_t + \\sigma_t = 1$, ``kappa_inverse``)."""

    def test_kappa_inverse_round_trip(self, scheduler):
        assert isinstance(scheduler, ConvexScheduler)
        t = torch.linspace(0.0, 1.0, 51, dtype=torch.float64)
        kappa = scheduler(t).alpha_t
        torch.testing.assert_close(scheduler.kappa_inverse(kappa), t)
        out = scheduler(t)
        torch.testing.assert_close(out.alpha_t + out.sigma_t, torch.ones_like(t))
