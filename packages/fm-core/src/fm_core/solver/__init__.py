"""Solvers (mirrors ``flow_matching.solver``)."""

from fm_core.solver.solver import Solver
from fm_core.solver.time_grid import check_time_grid, fixed_step_grid, resolve_time_grid

__all__ = ["Solver", "check_time_grid", "fixed_step_grid", "resolve_time_grid"]
