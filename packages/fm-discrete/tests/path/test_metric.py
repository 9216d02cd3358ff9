"""Metric-induced paths: brute-force marginals, valid rates, the continuity equation, the Hamming case."""

import itertools

import pytest
import torch

from fm_core.path.scheduler.scheduler import ConvexScheduler, SchedulerOutput
from fm_core.testing import ProbPathTests
from fm_discrete import (
    MetricDiscreteProbPath,
    MetricPathGeneralizedKL,
    MixtureDiscreteProbPath,
    MixturePathGeneralizedKL,
    PolynomialBetaSchedule,
)

V, L = 4, 2


def _line_path(power=1.0, scale=1.0):
    return MetricDiscreteProbPath.from_embeddings(
        torch.arange(float(V)).unsqueeze(-1), PolynomialBetaSchedule(scale, power)
    )


class TestMetricPathShared(ProbPathTests):
    @pytest.fixture
    def path(self):
        return _line_path(power=2.0)

    def make_endpoints(self, batch_size, dtype):
        return torch.randint(0, V, (batch_size, 7)), torch.randint(0, V, (batch_size, 7))

    def assert_same_points(self, a, b):
        assert torch.equal(a, b)


def _joint_target():
    g = torch.Generator().manual_seed(3)
    q = torch.rand(V**L, generator=g, dtype=torch.float64) ** 2
    return q / q.sum()


STATES = torch.tensor(list(itertools.product(range(V), repeat=L)))  # [V^L, L]


def _marginal(path, q, t):
    """p_t(x) = sum_{x1} q(x1) prod_i p_t(x^i | x1^i), brute force over V^L x V^L, [V^L]."""
    p = path.probabilities(STATES, torch.full((STATES.shape[0],), t, dtype=torch.float64))
    # p[s, i, v] = p_t(x^i = v | x1 = STATES[s]); lik[s, r] = prod_i p[s, i, STATES[r, i]]
    lik = torch.ones(STATES.shape[0], STATES.shape[0], dtype=torch.float64)
    for i in range(L):
        lik = lik * p[:, i, STATES[:, i]]
    return q @ lik


@pytest.mark.parametrize("t", [0.0, 0.35, 0.8, 1.0])
def test_sample_matches_brute_force_marginal(t):
    path, q = _line_path(), _joint_target()
    n = 60_000
    g = torch.Generator().manual_seed(0)
    x_1 = STATES[torch.multinomial(q, n, replacement=True, generator=g)]
    x_0 = torch.randint(0, V, (n, L), generator=g)
    x_t = path.sample(x_0, x_1, torch.full((n,), t, dtype=torch.float64), generator=g).x_t
    code = (x_t * torch.tensor([V, 1])).sum(-1)
    freq = torch.bincount(code, minlength=V**L).double() / n
    tv = 0.5 * (freq - _marginal(path, q, t)).abs().sum()
    assert tv < 0.01


def test_end_points_are_exact():
    path = _line_path()
    x_1 = torch.arange(V).unsqueeze(0)
    p0 = path.probabilities(x_1, torch.zeros(1))
    p1 = path.probabilities(x_1, torch.ones(1))
    assert torch.equal(p0, torch.full_like(p0, 1.0 / V))
    assert torch.equal(p1, torch.eye(V, dtype=p1.dtype).unsqueeze(0))


def test_conditional_velocity_is_a_rate_and_moves_closer():
    path = _line_path(power=2.0)
    g = torch.Generator().manual_seed(1)
    x_t, x_1 = torch.randint(0, V, (50, L), generator=g), torch.randint(0, V, (50, L), generator=g)
    u = path.conditional_velocity(x_t, x_1, torch.rand(50, generator=g, dtype=torch.float64))
    off = torch.ones_like(u, dtype=torch.bool).scatter_(-1, x_t.unsqueeze(-1), False)
    assert (u[off] >= 0).all()
    torch.testing.assert_close(u.sum(-1), torch.zeros(50, L, dtype=torch.float64))
    d = path.distance
    farther = d[torch.arange(V)].T[x_1] >= d[x_t, x_1].unsqueeze(-1)  # d(x, x1) >= d(x_t, x1)
    assert (u[off & farther] == 0).all()  # never away from x_1


@pytest.mark.parametrize("t", [0.2, 0.6])
def test_marginal_rates_satisfy_continuity_equation(t):
    """d/dt p_t(x) = sum_z u_t(x, z) p_t(z), with u from the exact posterior (brute force)."""
    path, q = _line_path(power=2.0), _joint_target()
    h = 1e-5
    dp = (_marginal(path, q, t + h) - _marginal(path, q, t - h)) / (2 * h)
    p_t = _marginal(path, q, t)
    # exact per-position posterior p(x1^i | z) at each state z
    lik = torch.ones(STATES.shape[0], STATES.shape[0], dtype=torch.float64)
    probs = path.probabilities(STATES, torch.full((STATES.shape[0],), t, dtype=torch.float64))
    for i in range(L):
        lik = lik * probs[:, i, STATES[:, i]]
    joint = q.unsqueeze(-1) * lik  # [x1, z]
    post = torch.stack(
        [torch.stack([joint[STATES[:, i] == a].sum(0) for a in range(V)], -1) for i in range(L)], 1
    )
    post = post / post.sum(-1, keepdim=True)  # [z, L, V]
    u = path.posterior_to_velocity(post.log(), STATES, torch.full((V**L,), t, dtype=torch.float64))
    # u[z, i, v]: rate of position i of z to v. Flow into state x from z differing at one i.
    flow = torch.zeros(V**L, dtype=torch.float64)
    for z in range(V**L):
        for i in range(L):
            for v in range(V):
                x = STATES[z].clone()
                x[i] = v
                flow[(x * torch.tensor([V, 1])).sum()] += u[z, i, v] * p_t[z]
    torch.testing.assert_close(flow, dp, atol=1e-6, rtol=1e-4)


class _KappaOfBeta(ConvexScheduler):
    """The mixture schedule equal to a Hamming metric path: kappa = 1 - V e^-b / (1 + (V-1) e^-b)."""

    def __init__(self, schedule):
        self.schedule = schedule

    def _evaluate(self, t):
        beta, d_beta = self.schedule(t)
        e = torch.exp(-beta)
        z = 1 + (V - 1) * e
        kappa = 1 - V * e / z
        d_kappa = V * d_beta * e / z**2
        return SchedulerOutput(kappa, 1 - kappa, d_kappa, -d_kappa)

    def kappa_inverse(self, kappa):
        raise NotImplementedError


def test_hamming_metric_is_the_uniform_mixture_path():
    schedule = PolynomialBetaSchedule(1.5, 1.0)
    metric = MetricDiscreteProbPath(1.0 - torch.eye(V, dtype=torch.float64), schedule)
    mixture = MixtureDiscreteProbPath(_KappaOfBeta(schedule))
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 5, V, generator=g, dtype=torch.float64)
    x_t, x_1 = torch.randint(0, V, (3, 5), generator=g), torch.randint(0, V, (3, 5), generator=g)
    # 1 - kappa stays above the mixture path's jump floor (1e-4) at these times
    t = torch.tensor([0.1, 0.4, 0.7], dtype=torch.float64)
    torch.testing.assert_close(
        metric.posterior_to_velocity(logits, x_t, t), mixture.posterior_to_velocity(logits, x_t, t)
    )
    ours = MetricPathGeneralizedKL(metric, reduction="none")(logits, x_1, x_t, t)
    theirs = MixturePathGeneralizedKL(mixture, reduction="none")(logits, x_1, x_t, t)
    torch.testing.assert_close(ours, theirs)


def test_generalized_kl_is_non_negative_and_differentiable():
    path = _line_path(power=2.0)
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(4, 3, V, generator=g, dtype=torch.float64, requires_grad=True)
    x_1 = torch.randint(0, V, (4, 3), generator=g)
    s = path.sample(torch.randint(0, V, (4, 3), generator=g), x_1, torch.rand(4, generator=g))
    loss = MetricPathGeneralizedKL(path, reduction="none")(logits, x_1, s.x_t, s.t)
    assert (loss >= -1e-12).all()
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_bad_input():
    with pytest.raises(ValueError, match="zero on the diagonal"):
        MetricDiscreteProbPath(torch.ones(3, 3))
    with pytest.raises(ValueError, match="positive off the diagonal"):
        MetricDiscreteProbPath(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="square"):
        MetricDiscreteProbPath(torch.zeros(3, 2))
    with pytest.raises(TypeError, match="schedule"):
        MetricDiscreteProbPath(1.0 - torch.eye(3), schedule="linear")
    with pytest.raises(ValueError, match="power"):
        PolynomialBetaSchedule(1.0, 0.5)
    with pytest.raises(ValueError, match="metric"):
        MetricDiscreteProbPath.from_embeddings(torch.randn(3, 2), metric="l7")
