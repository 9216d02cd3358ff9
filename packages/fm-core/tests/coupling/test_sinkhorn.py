import ot as pot
import pytest
import torch

from fm_core.coupling import sinkhorn_plan, squared_euclidean_cost


def _cost(n, m, seed=0):
    g = torch.Generator().manual_seed(seed)
    cost = squared_euclidean_cost(torch.randn(n, 3, generator=g), torch.randn(m, 3, generator=g))
    return cost / cost.max()


@pytest.mark.parametrize(("n", "m"), [(16, 16), (12, 20)])
def test_marginals(n, m):
    plan = sinkhorn_plan(_cost(n, m), reg=0.1)
    assert plan.shape == (n, m) and (plan >= 0).all()
    torch.testing.assert_close(
        plan.sum(1), torch.full((n,), 1 / n, dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        plan.sum(0), torch.full((m,), 1 / m, dtype=torch.float64), atol=1e-9, rtol=0
    )


def test_matches_pot_sinkhorn():
    cost = _cost(10, 10).double()
    ours = sinkhorn_plan(cost, reg=0.5, tol=1e-12, max_iter=5000)
    ref = pot.sinkhorn(
        pot.unif(10), pot.unif(10), cost.numpy(), reg=0.5, stopThr=1e-12, numItermax=5000
    )
    torch.testing.assert_close(ours, torch.from_numpy(ref), atol=1e-8, rtol=1e-6)


def test_small_reg_is_stable_and_near_exact():
    """POT's non-log sinkhorn underflows at this reg; the log domain does not."""
    cost = _cost(8, 8) * 100.0
    plan = sinkhorn_plan(cost, reg=0.05, max_iter=20000, tol=1e-4)
    assert torch.isfinite(plan).all()
    # Nearly a permutation matrix / 8.
    assert (plan.max(dim=1).values > 0.9 / 8).all()


def test_warns_when_not_converged():
    with pytest.warns(RuntimeWarning, match="did not converge"):
        sinkhorn_plan(_cost(8, 8), reg=1e-3, max_iter=3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="reg"):
        sinkhorn_plan(_cost(3, 3), reg=0)
    with pytest.raises(ValueError, match="cost"):
        sinkhorn_plan(torch.rand(3), reg=0.1)
    with pytest.raises(ValueError, match="max_iter"):
        sinkhorn_plan(_cost(3, 3), reg=0.1, max_iter=0)
