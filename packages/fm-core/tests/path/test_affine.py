import pytest
import torch

from fm_core.path import AffineProbPath, CondOTProbPath
from fm_core.path.scheduler import (
    CondOTScheduler,
    CosineScheduler,
    LinearVPScheduler,
    PolynomialConvexScheduler,
    VPScheduler,
)
from fm_core.testing import ContinuousProbPathTests

SCHEDULERS = {
    "condot": CondOTScheduler,
    "poly2": lambda: PolynomialConvexScheduler(2),
    "vp": VPScheduler,
    "linear_vp": LinearVPScheduler,
    "cosine": CosineScheduler,
}
SHAPES = {"BD": (6, 3), "BCHW": (6, 2, 4, 5)}


@pytest.mark.parametrize("name", [n for n in SCHEDULERS if n != "vp"])
class TestAffinePath(ContinuousProbPathTests):
    @pytest.fixture
    def path(self, name):
        return AffineProbPath(SCHEDULERS[name]())

    def make_endpoints(self, batch_size, dtype):
        g = torch.Generator().manual_seed(0)
        return (
            torch.randn(batch_size, 2, 3, generator=g, dtype=dtype),
            torch.randn(batch_size, 2, 3, generator=g, dtype=dtype),
        )


class TestVPPath(ContinuousProbPathTests):
    """VP's source end is alpha_0 ~ 0.0066, not 0: the end-point test checks t = 1 only."""

    @pytest.fixture
    def path(self):
        return AffineProbPath(VPScheduler())

    def make_endpoints(self, batch_size, dtype):
        return torch.randn(batch_size, 3, dtype=dtype), torch.randn(batch_size, 3, dtype=dtype)

    def test_end_points(self, path):
        x_0, x_1 = self.make_endpoints(5, torch.float64)
        torch.testing.assert_close(
            path.sample(x_0, x_1, torch.ones(5, dtype=torch.float64)).x_t, x_1
        )


def test_condot_path_closed_form():
    x_0, x_1 = torch.randn(4, 2), torch.randn(4, 2)
    t = torch.rand(4)
    s = CondOTProbPath().sample(x_0, x_1, t)
    torch.testing.assert_close(s.x_t, (1 - t[:, None]) * x_0 + t[:, None] * x_1)
    torch.testing.assert_close(s.dx_t, x_1 - x_0)


@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_converters_round_trip(name, shape):
    """Every converter against the true (x_0, x_1, velocity) of a sampled path, t of shape [B]."""
    path = AffineProbPath(SCHEDULERS[name]())
    x_0 = torch.randn(*shape, dtype=torch.float64)
    x_1 = torch.randn(*shape, dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, shape[0], dtype=torch.float64)
    s = path.sample(x_0, x_1, t)
    x_t, v = s.x_t, s.dx_t
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    close(path.target_to_velocity(x_1, x_t, t), v)
    close(path.epsilon_to_velocity(x_0, x_t, t), v)
    close(path.velocity_to_target(v, x_t, t), x_1)
    close(path.epsilon_to_target(x_0, x_t, t), x_1)
    close(path.velocity_to_epsilon(v, x_t, t), x_0)
    close(path.target_to_epsilon(x_1, x_t, t), x_0)


def test_converters_accept_scalar_and_broadcast_time():
    path = CondOTProbPath()
    x_0, x_1 = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.full((3,), 0.4)
    x_t = path.sample(x_0, x_1, t).x_t
    expected = path.target_to_velocity(x_1, x_t, t)
    torch.testing.assert_close(path.target_to_velocity(x_1, x_t, torch.tensor(0.4)), expected)
    torch.testing.assert_close(path.target_to_velocity(x_1, x_t, t.view(3, 1, 1, 1)), expected)


def test_converter_bad_inputs():
    path = CondOTProbPath()
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"t must be a scalar, have shape \[B\]"):
        path.target_to_velocity(x, x, torch.rand(5))
    with pytest.raises(ValueError, match="x_t must have the same shape as x_1"):
        path.target_to_velocity(x, x[:, :2], torch.rand(3))
    with pytest.raises(TypeError, match="velocity must be a floating-point tensor"):
        path.velocity_to_target(x.long(), x, torch.rand(3))


def test_rejects_integer_endpoints():
    with pytest.raises(TypeError, match="x_0 must be a floating-point tensor"):
        CondOTProbPath().sample(
            torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), torch.rand(2)
        )


def test_rejects_non_scheduler():
    with pytest.raises(TypeError, match="scheduler must be a fm_core Scheduler"):
        AffineProbPath("condot")


@pytest.mark.parametrize(
    ("data_dtype", "t_dtype"),
    [
        (torch.float32, torch.float64),  # was float64 (promoted by t)
        (torch.bfloat16, torch.float32),  # was float32 (promoted by t)
        (torch.float64, torch.float32),
        (torch.float16, torch.float64),
    ],
)
def test_sample_outputs_take_the_data_dtype(data_dtype, t_dtype):
    """Issue 12 §2: x_t and dx_t take x_0's dtype, as GeodesicProbPath's do, whatever t's is."""
    path = AffineProbPath(CosineScheduler())
    g = torch.Generator().manual_seed(0)
    x_0, x_1 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    t = torch.rand(4, generator=g)
    s = path.sample(x_0.to(data_dtype), x_1.to(data_dtype), t.to(t_dtype))
    assert s.x_t.dtype == s.dx_t.dtype == data_dtype
    ref = path.sample(x_0.double(), x_1.double(), t.double())
    tol = {torch.bfloat16: 2e-2, torch.float16: 2e-3}.get(data_dtype, 1e-6)
    torch.testing.assert_close(s.x_t.double(), ref.x_t, atol=tol, rtol=tol)
    with pytest.raises(TypeError, match="x_1 must have x_0's dtype"):
        path.sample(x_0, x_1.double(), t)
