"""Properties every ``ProbPath`` must have. Subclass and provide the fixtures."""

from __future__ import annotations

import pytest
import torch

from fm_core.path.path import ProbPath

__all__ = ["ContinuousProbPathTests", "ProbPathTests"]


class ProbPathTests:
    """Shared tests for probability paths (affine, mixture, geodesic).

    Subclass as ``class TestMine(ProbPathTests)`` and provide:

    - the ``path`` fixture (a ``ProbPath``);
    - ``make_endpoints(batch_size, dtype)`` returning ``(x_0, x_1)`` of shape ``[B, ...]``;
    - optionally ``assert_same_points(a, b)`` for the end-point test (``torch.testing.assert_close``
      by default; exact equality suits token tensors).

    ``t`` is tested in float32 and float64. Continuous paths subclass ``ContinuousProbPathTests``,
    which adds the velocity checks.
    """

    @pytest.fixture
    def path(self) -> ProbPath:
        raise NotImplementedError("subclasses provide the path fixture")

    def make_endpoints(self, batch_size: int, dtype: torch.dtype):
        raise NotImplementedError

    def assert_same_points(self, a, b):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_sample_fields_and_shapes(self, path, dtype):
        x_0, x_1 = self.make_endpoints(6, dtype)
        t = torch.rand(6, dtype=dtype)
        s = path.sample(x_0=x_0, x_1=x_1, t=t)
        assert s.x_t.shape == x_0.shape
        assert s.t.shape == (6,)
        assert s.x_t.dtype == x_0.dtype
        assert s.x_0 is x_0 and s.x_1 is x_1

    def test_end_points(self, path):
        dtype = torch.float64
        x_0, x_1 = self.make_endpoints(5, dtype)
        self.assert_same_points(path.sample(x_0, x_1, torch.zeros(5, dtype=dtype)).x_t, x_0)
        self.assert_same_points(path.sample(x_0, x_1, torch.ones(5, dtype=dtype)).x_t, x_1)

    def test_rejects_time_of_wrong_shape(self, path):
        x_0, x_1 = self.make_endpoints(4, torch.float32)
        with pytest.raises(ValueError, match=r"t must have shape \[batch_size\]"):
            path.sample(x_0, x_1, torch.rand(4, 1))
        with pytest.raises(ValueError, match=r"t must have shape \[batch_size\]"):
            path.sample(x_0, x_1, torch.rand(3))

    def test_rejects_time_outside_unit_interval(self, path):
        x_0, x_1 = self.make_endpoints(4, torch.float32)
        with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
            path.sample(x_0, x_1, torch.tensor([0.1, 0.2, 1.5, 0.3]))
        with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
            path.sample(x_0, x_1, torch.tensor([0.1, float("nan"), 0.5, 0.3]))

    def test_rejects_integer_time(self, path):
        x_0, x_1 = self.make_endpoints(4, torch.float32)
        with pytest.raises(TypeError, match="t must be a floating-point tensor"):
            path.sample(x_0, x_1, torch.zeros(4, dtype=torch.long))

    def test_rejects_mismatched_endpoints(self, path):
        x_0, x_1 = self.make_endpoints(4, torch.float32)
        with pytest.raises(ValueError, match="x_1 must have the shape of x_0"):
            path.sample(x_0, x_1[:3], torch.rand(4))


class ContinuousProbPathTests(ProbPathTests):
    """``ProbPathTests`` plus the conditional velocity ``dx_t``: shape, and finite differences of ``x_t``."""

    def test_velocity_shape(self, path):
        x_0, x_1 = self.make_endpoints(6, torch.float32)
        s = path.sample(x_0, x_1, torch.rand(6))
        assert s.dx_t.shape == x_0.shape and s.dx_t.dtype == x_0.dtype

    def test_velocity_matches_finite_differences(self, path):
        x_0, x_1 = self.make_endpoints(5, torch.float64)
        t = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)
        h = 1e-6
        plus = path.sample(x_0, x_1, t + h).x_t
        minus = path.sample(x_0, x_1, t - h).x_t
        fd = (plus - minus) / (2 * h)
        torch.testing.assert_close(path.sample(x_0, x_1, t).dx_t, fd, rtol=1e-4, atol=1e-5)
