import pytest
import torch

from fm_discrete.solver import guided_scores
from fm_discrete.solver.step import mixture_euler_step_torch


@pytest.mark.parametrize("sparse", [True, False])
def test_step_jumps_with_given_probability(sparse):
    n = 30_000
    scores = torch.tensor([0.0, 0.0, 1.0]).expand(n, 3)  # probabilities: x_1 is always 2
    x_t = torch.zeros(n, dtype=torch.long)
    jump = torch.full((n,), 0.3, dtype=torch.float64)
    jump[:100] = 0.0
    x = mixture_euler_step_torch(scores, x_t, jump, scores_are_logits=False, sparse=sparse)
    assert (x[:100] == 0).all()
    assert abs((x == 2).double().mean().item() - 0.3) < 0.015


def test_guided_scores_scale_zero_is_conditional():
    p = torch.softmax(torch.randn(5, 7, dtype=torch.float64), -1)
    pu = torch.softmax(torch.randn(5, 7, dtype=torch.float64), -1)
    x = torch.randint(0, 7, (5,))
    q, factor = guided_scores(p, pu, x, 0.0)
    torch.testing.assert_close(q, p)
    assert (factor == 1).all()
    q, factor = guided_scores(p, pu, x, 4.0)
    assert (q >= 0).all() and (factor >= 1).all()
