import itertools

import pytest
import torch
from scipy.optimize import linear_sum_assignment

from fm_core.coupling import auction_assignment, squared_euclidean_cost


def _cost(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return squared_euclidean_cost(
        torch.randn(n, d, generator=g, dtype=torch.float64),
        torch.randn(n, d, generator=g, dtype=torch.float64),
    )


def _total(cost, col):
    return cost[torch.arange(cost.shape[0]), col].sum().item()


@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_equals_brute_force_optimum(n):
    for seed in range({2: 10, 3: 25, 5: 25, 7: 6}[n]):
        cost = _cost(n, 2, seed)
        col = auction_assignment(cost)
        assert sorted(col.tolist()) == list(range(n))
        best = min(
            sum(cost[i, p[i]].item() for i in range(n)) for p in itertools.permutations(range(n))
        )
        assert _total(cost, col) == pytest.approx(best, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("d", [2, 48])
def test_matches_scipy_on_64(d):
    for seed in range(3):
        cost = _cost(64, d, seed)
        rows, cols = linear_sum_assignment(cost.numpy())
        assert _total(cost, auction_assignment(cost)) == pytest.approx(
            cost.numpy()[rows, cols].sum(), rel=1e-12
        )


def test_integer_like_costs_with_ties_and_degenerate_cases():
    cost = torch.tensor([[1.0, 1.0, 2.0], [1.0, 1.0, 2.0], [2.0, 2.0, 0.0]])
    col = auction_assignment(cost)
    assert sorted(col.tolist()) == [0, 1, 2] and _total(cost, col) == 2.0
    assert auction_assignment(torch.zeros(4, 4)).tolist() == [0, 1, 2, 3]
    assert auction_assignment(torch.ones(1, 1)).tolist() == [0]
    assert auction_assignment(torch.rand(5, 5, dtype=torch.float32)).dtype == torch.long


def test_bad_inputs():
    with pytest.raises(ValueError, match="square"):
        auction_assignment(torch.rand(3, 4))
    with pytest.raises(TypeError, match="cost"):
        auction_assignment(torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="finite"):
        auction_assignment(torch.tensor([[0.0, float("inf")], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="tol"):
        auction_assignment(torch.rand(3, 3), tol=0.0)
    with pytest.raises(ValueError, match="scaling"):
        auction_assignment(torch.rand(3, 3), scaling=1.0)
