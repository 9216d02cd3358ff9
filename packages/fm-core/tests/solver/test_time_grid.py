import pytest
import torch

from fm_core.solver.time_grid import check_time_grid, fixed_step_grid, resolve_time_grid


def test_refines_each_interval_and_hits_every_knot():
    grid, index = fixed_step_grid(torch.tensor([0.0, 0.5, 1.0]), 0.1)
    assert grid.numel() == 11 and index == [0, 5, 10]
    torch.testing.assert_close(grid, torch.linspace(0, 1, 11))


def test_descending_grid_and_uneven_intervals():
    grid, index = fixed_step_grid(torch.tensor([1.0, 0.7, 0.0]), 0.25)
    assert index == [0, 2, 5]
    assert (grid.diff() < 0).all()
    assert grid[index].tolist() == pytest.approx([1.0, 0.7, 0.0])
    assert grid.diff().abs().max() <= 0.25 + 1e-7


def test_no_step_size_keeps_grid():
    g = torch.tensor([0.0, 0.3, 1.0])
    grid, index = fixed_step_grid(g, None)
    assert grid is g and index == [0, 1, 2]


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        (torch.tensor([0.0]), "at least 2 times"),
        (torch.tensor([0.0, 0.5, 0.4]), "strictly increasing or strictly decreasing"),
        (torch.tensor([0.0, 1.5]), r"must lie in \[0, 1\]"),
        (torch.tensor([[0.0, 1.0]]), "1-D tensor"),
    ],
)
def test_rejects_bad_grids(grid, match):
    with pytest.raises(ValueError, match=match):
        check_time_grid(grid)


def test_rejects_integer_grid_and_bad_step():
    with pytest.raises(TypeError, match="time_grid must be a floating-point tensor"):
        check_time_grid(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="step_size must be a positive number"):
        fixed_step_grid(torch.tensor([0.0, 1.0]), 0.0)


def test_resolve_default_and_sequence():
    assert resolve_time_grid(None, (1.0, 0.0)).tolist() == [1.0, 0.0]
    assert (
        resolve_time_grid([0.0, 0.5, 1.0], (0.0, 1.0), dtype=torch.float64).dtype == torch.float64
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, "float32 cast to float64"])
@pytest.mark.parametrize(("step_size", "steps"), [(0.02, 50), (0.01, 100), (0.1, 10), (0.2, 5)])
def test_float_rounding_of_knots_adds_no_steps(dtype, step_size, steps):
    # linspace(0, 1, 6) in float32 stores 0.2 as 0.2000000030: 0.2000000030 / 0.02 > 10 used to
    # give 11 steps per interval (53 Euler steps for 0.02, 103 for 0.01).
    if isinstance(dtype, str):
        knots = torch.linspace(0, 1, 6).double()
    else:
        knots = torch.linspace(0, 1, 6, dtype=dtype)
    grid, index = fixed_step_grid(knots, step_size)
    assert grid.numel() - 1 == steps
    assert index == [i * steps // 5 for i in range(6)]


def test_euler_with_a_knotted_grid_takes_the_expected_number_of_steps():
    from fm_core import ODESolver

    solver = ODESolver(lambda x, t: -x)
    solver.sample(torch.ones(2, 1), step_size=0.02, time_grid=torch.linspace(0, 1, 6))
    assert solver.last_nfe == 50
    solver.sample(torch.ones(2, 1), step_size=0.01, time_grid=torch.linspace(0, 1, 6))
    assert solver.last_nfe == 100
