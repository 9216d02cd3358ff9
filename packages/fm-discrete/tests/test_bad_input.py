"""Issue 12 §3 for fm-discrete: bad values raise clear errors (eager mode on CPU, the default).

The ``meta`` device stands in for a second device (no GPU needed).
"""

from __future__ import annotations

import pytest
import torch

from fm_core import CondOTScheduler
from fm_discrete import (
    MixtureDiscreteEulerSolver,
    MixtureDiscreteProbPath,
    MixturePathCrossEntropy,
    MixturePathGeneralizedKL,
)

V = 6
PATH = MixtureDiscreteProbPath(CondOTScheduler())


class _Model(torch.nn.Module):
    """Uniform posterior; from call ``bad_from`` on, the given bad value at position 0."""

    def __init__(self, output: str, bad: float, bad_from: int):
        super().__init__()
        self.output, self.bad, self.bad_from, self.calls = output, bad, bad_from, 0

    def forward(self, x, t):
        out = torch.full((*x.shape, V), 1.0 / V)
        if self.output == "logits":
            out = out.log()
        if self.calls >= self.bad_from:
            out[..., 0, 1] = self.bad
        self.calls += 1
        return out


@pytest.mark.parametrize(
    ("output", "bad", "match"),
    [
        ("logits", float("nan"), "NaN or \\+inf logits"),  # was: token 0 everywhere
        ("logits", float("inf"), "NaN or \\+inf logits"),
        ("probs", float("nan"), "finite, non-negative"),
        ("probs", -0.5, "finite, non-negative"),
    ],
)
@pytest.mark.parametrize("bad_from", [0, 2])  # was checked at the first call only
def test_solver_checks_the_model_output_at_every_step(output, bad, match, bad_from):
    model = _Model(output, bad, bad_from)
    solver = MixtureDiscreteEulerSolver(model, PATH, V, model_output=output)
    with pytest.raises(ValueError, match=match):
        solver.sample(torch.zeros(2, 3, dtype=torch.long), step_size=0.25)
    assert model.calls == bad_from + 1  # raised at the step that went bad, before drawing


def test_solver_rejects_a_row_of_minus_infinite_logits():
    class AllMasked(torch.nn.Module):
        def forward(self, x, t):
            return torch.full((*x.shape, V), float("-inf"))

    solver = MixtureDiscreteEulerSolver(AllMasked(), PATH, V, model_output="logits")
    with pytest.raises(ValueError, match="finite logit in every row"):
        solver.sample(torch.zeros(1, 2, dtype=torch.long), step_size=0.5)


@pytest.mark.parametrize("loss", [MixturePathGeneralizedKL(PATH), MixturePathCrossEntropy()])
@pytest.mark.parametrize("t", [2.0, -0.1, float("nan")])
def test_losses_check_the_time_range(loss, t):
    logits, x_1 = torch.randn(2, 3, V), torch.randint(0, V, (2, 3))
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        loss(logits, x_1, x_1, torch.tensor([0.5, t]))


def test_empty_batches_raise_everywhere():
    e, logits = torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, 3, V)
    with pytest.raises(ValueError, match="x_0 must hold at least one sample"):
        PATH.sample(e, e, torch.zeros(0))
    for loss in (MixturePathGeneralizedKL(PATH), MixturePathCrossEntropy()):
        with pytest.raises(ValueError, match="logits must hold at least one sample"):
            loss(logits, e, e, torch.zeros(0))
    solver = MixtureDiscreteEulerSolver(_Model("probs", 0.0, 99), PATH, V)
    with pytest.raises(ValueError, match="x_init must hold at least one sample"):
        solver.sample(e, step_size=0.5)  # was a raw reshape error


def test_device_mismatch_names_both_devices():
    logits, x_1 = torch.randn(2, 3, V), torch.randint(0, V, (2, 3))
    with pytest.raises(ValueError, match="x_t is on meta but logits is on cpu"):
        MixturePathGeneralizedKL(PATH)(logits, x_1, x_1.to("meta"), torch.rand(2))
    with pytest.raises(ValueError, match="t is on meta but posterior_logits is on cpu"):
        PATH.posterior_to_velocity(logits, x_1, torch.rand(2, device="meta"))
    with pytest.raises(ValueError, match="x_1 is on meta but x_0 is on cpu"):
        PATH.sample(x_1, x_1.to("meta"), torch.rand(2))
    solver = MixtureDiscreteEulerSolver(_Model("probs", 0.0, 99), PATH, V)
    with pytest.raises(ValueError, match="fixed_mask is on meta but x_init is on cpu"):
        solver.sample(x_1, 0.5, fixed_mask=torch.ones(2, 3, dtype=torch.bool, device="meta"))
