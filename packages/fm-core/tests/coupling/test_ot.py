import pytest
import torch
from scipy.optimize import linear_sum_assignment

from fm_core.coupling import CouplingSample, ExactOTCoupling, SinkhornOTCoupling


def _batch(n=64, shape=(2,), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randn(n, *shape, generator=g) + 2.0


def _total(x_0, x_1):
    return (x_0 - x_1).flatten(1).square().sum().item()


@pytest.mark.parametrize("solver", ["auction", "scipy", "auto"])
def test_exact_pairing_beats_random_and_matches_scipy(solver):
    x_0, x_1 = _batch(64, (3, 2, 2))
    pairs = ExactOTCoupling(solver=solver)(x_0, x_1)
    assert isinstance(pairs, CouplingSample)
    assert sorted(pairs.index_1.tolist()) == list(range(64))
    torch.testing.assert_close(pairs.x_1, x_1[pairs.index_1])
    torch.testing.assert_close(pairs.x_0, x_0)
    ours = _total(pairs.x_0, pairs.x_1)
    for seed in range(5):
        perm = torch.randperm(64, generator=torch.Generator().manual_seed(seed))
        assert ours < _total(x_0, x_1[perm])
    cost = torch.cdist(x_0.flatten(1).double(), x_1.flatten(1).double()) ** 2
    rows, cols = linear_sum_assignment(cost.numpy())
    assert ours == pytest.approx(cost.numpy()[rows, cols].sum(), rel=1e-6)


def test_sinkhorn_pairing_is_better_than_independent():
    x_0, x_1 = _batch(64)
    pairs = SinkhornOTCoupling(reg=0.01)(x_0, x_1, generator=torch.Generator().manual_seed(0))
    exact = _total(*(lambda p: (p.x_0, p.x_1))(ExactOTCoupling()(x_0, x_1)))
    assert exact <= _total(pairs.x_0, pairs.x_1) < _total(x_0, x_1)
    again = SinkhornOTCoupling(reg=0.01)(x_0, x_1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pairs.index_1, again.index_1)


def test_sinkhorn_plan_marginals():
    x_0, x_1 = _batch(32)
    plan = SinkhornOTCoupling(reg=0.05).plan(x_0, x_1)
    torch.testing.assert_close(
        plan.sum(1), torch.full((32,), 1 / 32, dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        plan.sum(0), torch.full((32,), 1 / 32, dtype=torch.float64), atol=1e-9, rtol=0
    )


@pytest.mark.parametrize("coupling", [ExactOTCoupling(), SinkhornOTCoupling(reg=0.05)])
def test_pairs_only_within_labels(coupling):
    g = torch.Generator().manual_seed(0)
    y_0 = torch.randint(0, 3, (30,), generator=g)
    y_1 = y_0[torch.randperm(30, generator=g)]
    x_0, x_1 = _batch(30)
    pairs = coupling(x_0, x_1, y_0=y_0, y_1=y_1, generator=g)
    assert torch.equal(pairs.y_0, pairs.y_1)
    assert torch.equal(pairs.y_1, y_1[pairs.index_1])


def test_labelled_exact_is_optimal_per_class():
    y = torch.tensor([0, 1] * 8)
    x_0, x_1 = _batch(16)
    pairs = ExactOTCoupling(solver="auction")(x_0, x_1, y_0=y, y_1=y)
    for c in (0, 1):
        idx = (y == c).nonzero().squeeze(1)
        cost = torch.cdist(x_0[idx].double(), x_1[idx].double()) ** 2
        r, k = linear_sum_assignment(cost.numpy())
        assert _total(pairs.x_0[idx], pairs.x_1[idx]) == pytest.approx(
            cost.numpy()[r, k].sum(), rel=1e-6
        )


def test_custom_cost_fn():
    x_0, x_1 = _batch(16)
    l1 = lambda a, b: torch.cdist(a, b, p=1)
    pairs = ExactOTCoupling(cost_fn=l1)(x_0, x_1)
    cost = l1(x_0, x_1).double()
    r, k = linear_sum_assignment(cost.numpy())
    assert cost[torch.arange(16), pairs.index_1].sum().item() == pytest.approx(
        cost.numpy()[r, k].sum()
    )


def test_bad_inputs():
    x_0, x_1 = _batch(8)
    coupling = ExactOTCoupling()
    with pytest.raises(ValueError, match="x_1 must have the shape"):
        coupling(x_0, x_1[:6])
    with pytest.raises(ValueError, match="x_1 must have the shape"):
        coupling(x_0, torch.randn(8, 3))
    with pytest.raises(TypeError, match="x_0"):
        coupling(x_0.long(), x_1)
    with pytest.raises(ValueError, match="y_1 must have shape"):
        coupling(x_0, x_1, y_0=torch.zeros(8), y_1=torch.zeros(7))
    with pytest.raises(ValueError, match="both y_0 and y_1"):
        coupling(x_0, x_1, y_0=torch.zeros(8))
    with pytest.raises(ValueError, match="equally often"):
        coupling(x_0, x_1, y_0=torch.zeros(8), y_1=torch.ones(8))
    with pytest.raises(ValueError, match="reg"):
        SinkhornOTCoupling(reg=-1.0)
    with pytest.raises(ValueError, match="tol"):
        ExactOTCoupling(tol=2.0)
    with pytest.raises(TypeError, match="cost_fn"):
        ExactOTCoupling(cost_fn="l2")


def test_exact_solvers_agree_on_the_permutation():
    x_0, x_1 = _batch(48, (5,), seed=3)
    auction = ExactOTCoupling(solver="auction")(x_0, x_1).index_1
    scipy_ = ExactOTCoupling(solver="scipy")(x_0, x_1).index_1
    assert torch.equal(auction, scipy_)


def test_exact_rejects_unknown_solver():
    with pytest.raises(ValueError, match="solver must be 'auto', 'auction' or 'scipy'"):
        ExactOTCoupling(solver="hungarian")
