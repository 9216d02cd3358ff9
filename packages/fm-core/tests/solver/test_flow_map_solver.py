"""FlowMapSolver: exact jumps with the closed-form Gaussian flow map, conventions, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fm_core import FlowMapSolver, ODESolver
from fm_core.testing import (
    GaussianFlow,
    GaussianFlowMap,
    compile_fullgraph,
    fresh_dynamo,  # noqa: F401 (autouse fixture)
)

MU = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def _x0(n=256, dtype=torch.float64):
    return torch.randn(n, 3, dtype=dtype, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_exact_flow_map_is_exact_on_any_grid(steps):
    x_0 = _x0()
    solver = FlowMapSolver(GaussianFlowMap(MU, 0.4))
    with torch.no_grad():
        x_1 = solver.sample(x_0, time_grid=torch.linspace(0, 1, steps + 1, dtype=torch.float64))
    torch.testing.assert_close(x_1, GaussianFlow(MU, 0.4).flow(x_0, 1.0).detach())
    assert solver.last_nfe == steps


def test_one_jump_equals_many_euler_steps_of_the_velocity():
    """The average velocity's single jump is the limit of the ODE (rk4 on the same flow)."""
    x_0 = _x0()
    with torch.no_grad():
        jump = FlowMapSolver(GaussianFlowMap(MU, 0.4)).sample(x_0)
        ode = ODESolver(GaussianFlow(MU, 0.4)).sample(x_0, step_size=0.01, method="rk4")
    torch.testing.assert_close(jump, ode, atol=1e-8, rtol=0)


def test_intermediates_step_size_and_extras():
    seen = []

    def model(x, t, r, scale):
        seen.append((float(t), float(r)))
        return scale * torch.ones_like(x)

    solver = FlowMapSolver(model)
    out = solver.sample(
        torch.zeros(2, 3), step_size=0.25, time_grid=[0.0, 0.5, 1.0], return_intermediates=True,
        scale=2.0,
    )  # fmt: skip
    assert out.shape == (3, 2, 3)
    torch.testing.assert_close(out[:, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert seen == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert solver.last_nfe == 4


def test_solver_compiles_fullgraph_and_matches_eager():
    fmap = GaussianFlowMap(MU.float(), 0.4)
    solver = FlowMapSolver(fmap)
    grid = torch.linspace(0, 1, 3)

    def run(x):
        return solver.sample(x, time_grid=grid)

    x = _x0(8, torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(compile_fullgraph(run)(x), run(x))


def test_bad_input():
    with pytest.raises(TypeError, match="keyword argument r"):
        FlowMapSolver(lambda x, t: x)
    with pytest.raises(TypeError, match="keyword argument r"):
        FlowMapSolver(nn.Linear(2, 2))
    calls = []
    solver = FlowMapSolver(lambda x, t, r: calls.append(1) or x)
    with pytest.raises(ValueError, match="time_grid must increase"):
        solver.sample(torch.zeros(2, 2), time_grid=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"time_grid must lie in \[0, 1\]"):
        solver.sample(torch.zeros(2, 2), time_grid=[0.0, 1.5])
    with pytest.raises(ValueError, match="at least one sample"):
        solver.sample(torch.zeros(0, 2))
    with pytest.raises(TypeError, match="floating"):
        solver.sample(torch.zeros(2, 2, dtype=torch.long))
    assert not calls
    with pytest.raises(ValueError, match="x's shape"):
        FlowMapSolver(lambda x, t, r: x[:1]).sample(torch.zeros(2, 2))
