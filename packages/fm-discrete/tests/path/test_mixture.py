import pytest
import torch

from fm_core.path.scheduler.convex import CondOTScheduler, PolynomialConvexScheduler
from fm_core.path.scheduler.gaussian import CosineScheduler
from fm_core.testing import ProbPathTests
from fm_discrete import DiscretePathSample, MixtureDiscreteProbPath, posterior_to_velocity
from fm_discrete import path as path_mod


class TestMixturePathShared(ProbPathTests):
    @pytest.fixture
    def path(self):
        return MixtureDiscreteProbPath(PolynomialConvexScheduler(2))

    def make_endpoints(self, batch_size, dtype):
        x_0 = torch.full((batch_size, 7), 10)
        x_1 = torch.randint(0, 10, (batch_size, 7))
        return x_0, x_1

    def assert_same_points(self, a, b):
        assert torch.equal(a, b)


def test_mirror_and_sample_type():
    assert path_mod.MixtureDiscreteProbPath is MixtureDiscreteProbPath
    s = MixtureDiscreteProbPath(CondOTScheduler()).sample(
        torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), torch.rand(2)
    )
    assert isinstance(s, DiscretePathSample)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.75, 1.0])
def test_marginals_match_kappa(t):
    path = MixtureDiscreteProbPath(PolynomialConvexScheduler(2))
    n = 40_000
    x_0 = torch.zeros(n, 2, dtype=torch.long)
    x_1 = torch.ones(n, 2, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    x_t = path.sample(x_0, x_1, torch.full((n,), t), generator=g).x_t
    freq = x_t.double().mean(0)
    kappa = t**2
    assert torch.allclose(freq, torch.full_like(freq, kappa), atol=4 * (0.25 / n) ** 0.5 + 1e-12)


def test_non_convex_scheduler_is_type_error():
    with pytest.raises(TypeError, match="scheduler must be a fm_core ConvexScheduler"):
        MixtureDiscreteProbPath(CosineScheduler())


def test_rejects_float_tokens():
    path = MixtureDiscreteProbPath(CondOTScheduler())
    with pytest.raises(TypeError, match="x_0 must be an integer tensor"):
        path.sample(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), torch.rand(2))


def test_posterior_to_velocity_matches_direct_formula():
    path = MixtureDiscreteProbPath(PolynomialConvexScheduler(3))
    logits = torch.randn(4, 5, 7, dtype=torch.float64)
    x_t = torch.randint(0, 7, (4, 5))
    t = torch.rand(4, dtype=torch.float64) * 0.9
    u = path.posterior_to_velocity(logits, x_t, t)
    k, dk = t**3, 3 * t**2
    direct = (dk / (1 - k))[:, None, None] * (
        logits.softmax(-1) - torch.nn.functional.one_hot(x_t, 7).double()
    )
    torch.testing.assert_close(u, direct)
    torch.testing.assert_close(u.sum(-1), torch.zeros(4, 5, dtype=torch.float64))
    torch.testing.assert_close(posterior_to_velocity(logits, x_t, t, path), direct)


def test_posterior_to_velocity_finite_at_one_and_checks_shapes():
    path = MixtureDiscreteProbPath(CondOTScheduler())
    u = path.posterior_to_velocity(
        torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), torch.ones(2)
    )
    assert torch.isfinite(u).all()
    with pytest.raises(ValueError, match="posterior_logits must have shape"):
        path.posterior_to_velocity(
            torch.randn(2, 4, 4), torch.zeros(2, 3, dtype=torch.long), torch.ones(2)
        )
    with pytest.raises(ValueError, match="x_t holds token id 9 outside the vocabulary"):
        path.posterior_to_velocity(torch.randn(2, 3, 4), torch.full((2, 3), 9), torch.ones(2))


def test_posterior_to_velocity_has_a_gradient():
    """Issue 12 §2: the velocity was written into softmax's saved output, so backward raised."""
    path = MixtureDiscreteProbPath(PolynomialConvexScheduler(2))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    x_t, t = torch.randint(0, 5, (2, 3), generator=g), torch.tensor([0.3, 0.8], dtype=torch.float64)
    u = path.posterior_to_velocity(logits, x_t, t)
    (grad,) = torch.autograd.grad((u * torch.arange(5.0)).sum(), logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda z: path.posterior_to_velocity(z, x_t, t), (logits,))
    torch.testing.assert_close(u.sum(-1), torch.zeros(2, 3, dtype=torch.float64))
