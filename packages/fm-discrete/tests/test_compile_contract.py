"""The compile contract of fm-discrete (issue 12): training and sampling steps compile whole.

``torch.compile(fullgraph=True)`` raises on a graph break, so these fail if the token-range,
time-range or probability checks read a value back while compiling. Random draws under
``aot_eager`` follow the eager generator, so compiled and eager values agree exactly.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fm_core import CondOTScheduler, PolynomialConvexScheduler
from fm_core.testing import compile_fullgraph, fresh_dynamo  # noqa: F401 (autouse fixture)
from fm_core.utils import value_checks
from fm_discrete import (
    MixtureDiscreteEulerSolver,
    MixtureDiscreteProbPath,
    MixturePathCrossEntropy,
    MixturePathGeneralizedKL,
)
from fm_discrete.solver.step import mixture_euler_step_torch

V = 11  # 10 tokens + a mask


_compile = compile_fullgraph


class _Posterior(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(V, 16)
        self.head = nn.Linear(17, V)

    def forward(self, x, t):
        h = self.embed(x)
        t = t[:, None, None].expand(*h.shape[:-1], 1).to(h.dtype)
        return self.head(torch.cat([h, t], dim=-1))


def _loss_fn(name, path):
    if name == "generalized_kl":
        return MixturePathGeneralizedKL(path)
    if name == "cross_entropy":
        return MixturePathCrossEntropy()
    return MixturePathCrossEntropy(only_changed=True)


@pytest.mark.parametrize("loss_name", ["generalized_kl", "cross_entropy", "cross_entropy_masked"])
@pytest.mark.parametrize("scheduler", [CondOTScheduler(), PolynomialConvexScheduler(2)])
def test_discrete_training_step_compiles_and_matches_eager(loss_name, scheduler):
    model = _Posterior()
    path = MixtureDiscreteProbPath(scheduler)
    loss_fn = _loss_fn(loss_name, path)

    def step(x_0, x_1, t):
        sample = path.sample(x_0, x_1, t)
        logits = model(sample.x_t, sample.t)
        return loss_fn(logits, sample.x_1, sample.x_t, sample.t)

    g = torch.Generator().manual_seed(1)
    x_1 = torch.randint(0, V - 1, (4, 9), generator=g)
    x_0, t = torch.full_like(x_1, V - 1), torch.rand(4, generator=g)
    torch.manual_seed(5)
    loss = step(x_0, x_1, t)
    loss.backward()
    eager = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    model.zero_grad()
    torch.manual_seed(5)
    loss = _compile(step)(x_0, x_1, t)
    loss.backward()
    torch.testing.assert_close(loss.detach(), eager[0])
    for p, ref in zip(model.parameters(), eager[1]):
        torch.testing.assert_close(p.grad, ref)


def test_posterior_to_velocity_compiles_with_gradient():
    path = MixtureDiscreteProbPath(CondOTScheduler())
    logits = torch.randn(3, 5, V, requires_grad=True)
    x_t, t = torch.randint(0, V, (3, 5)), torch.rand(3)
    eager = path.posterior_to_velocity(logits, x_t, t)
    compiled = _compile(path.posterior_to_velocity)(logits, x_t, t)
    torch.testing.assert_close(compiled, eager)
    (grad,) = torch.autograd.grad(compiled.square().sum(), logits)
    (ref,) = torch.autograd.grad(eager.square().sum(), logits)
    torch.testing.assert_close(grad, ref)


def test_euler_solver_step_compiles_and_matches_eager():
    """One step of ``MixtureDiscreteEulerSolver``: the model call and its jump (the solver's loop
    body, ``mixture_euler_step_torch``; the grid and jump probabilities are host floats computed
    once per solve). Under compile the step draws densely: no data-dependent row count."""
    model = _Posterior()
    path = MixtureDiscreteProbPath(CondOTScheduler())
    solver = MixtureDiscreteEulerSolver(model, path, V, mask_token=V - 1, model_output="logits")

    def step(x, t, jump):
        scores = solver.model(x=x, t=t).reshape(-1, V)
        return mixture_euler_step_torch(scores, x.reshape(-1), jump).view_as(x)

    x = torch.full((4, 6), V - 1)
    t = torch.full((4,), 0.3)
    jump = torch.full((24,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        torch.manual_seed(3)
        compiled = _compile(step)(x, t, jump)
        torch.manual_seed(3)
        scores = model(x, t).reshape(-1, V)
        eager = mixture_euler_step_torch(scores, x.reshape(-1), jump, sparse=False).view_as(x)
    assert torch.equal(compiled, eager)
    assert (compiled != V - 1).any() and (compiled == V - 1).any()


def test_value_checks_skip_while_compiling_and_raise_in_eager():
    path = MixtureDiscreteProbPath(CondOTScheduler())
    loss_fn = MixturePathGeneralizedKL(path)
    logits, x_1 = torch.randn(2, 3, V), torch.randint(0, V, (2, 3))
    t_bad = torch.tensor([0.5, 2.0])
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        loss_fn(logits, x_1, x_1, t_bad)
    x_bad = x_1.clone()
    x_bad[0, 0] = V + 3
    with pytest.raises(ValueError, match="x_1 holds token id 14 outside the vocabulary"):
        loss_fn(logits, x_bad, x_1, torch.rand(2))
    compiled = _compile(loss_fn)(logits, x_1, x_1, t_bad)
    with value_checks("off"):  # the compiled graph computes what eager computes unchecked
        torch.testing.assert_close(compiled, loss_fn(logits, x_1, x_1, t_bad))
