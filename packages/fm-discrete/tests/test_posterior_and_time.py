import pytest
import torch

from fm_core.path.scheduler.convex import PolynomialConvexScheduler
from fm_discrete import MaskedPosterior, forbid_token, mixture_times, stratified_uniform


def test_masked_posterior_forbids_mask_and_copies_unmasked():
    net = lambda x, t: torch.randn(*x.shape, 5)
    x = torch.tensor([[0, 4, 2, 4]])
    p = MaskedPosterior(net, 4)(x, torch.zeros(1)).softmax(-1)
    assert (p[..., 4] == 0).all()
    assert torch.equal(p[0, 0], torch.eye(5)[0]) and torch.equal(p[0, 2], torch.eye(5)[2])
    assert (p[0, 1, :4] > 0).all()  # masked positions keep the network's posterior
    q = MaskedPosterior(net, 4, copy_unmasked=False)(x, torch.zeros(1)).softmax(-1)
    assert (q[0, 0, 1:4] > 0).all() and (q[..., 4] == 0).all()
    assert forbid_token(torch.zeros(2), 1)[1] == -torch.inf


def test_global_batch_slices_are_one_stratified_draw():
    g = torch.Generator().manual_seed(0)
    parts = [
        stratified_uniform(4, offset=4 * r, global_batch_size=12, generator=g) for r in range(3)
    ]
    u = torch.cat(parts)
    assert torch.equal((u * 12).floor(), torch.arange(12, dtype=torch.float64))
    with pytest.raises(ValueError, match="global_batch_size"):
        stratified_uniform(4, offset=10, global_batch_size=12)


@pytest.mark.parametrize("variable", ["uniform", "kappa", "elbo"])
def test_importance_weights_keep_the_time_average(variable):
    """E_u[weight(u) f(t(u))] = int_0^1 f(t) dt for f(t) = t^2 (= 1/3)."""
    scheduler = PolynomialConvexScheduler(2)
    u = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    t, w = mixture_times(scheduler, u, variable, eps=1e-12)
    assert abs(float((w * t**2).mean()) - 1 / 3) < 2e-3
