"""Solvers (mirrors ``flow_matching.solver``)."""

from fm_core.solver.divergence import ExactDivergence, HutchinsonDivergence
from fm_core.solver.dopri5 import Dopri5
from fm_core.solver.flow_map import FlowMapSolver
from fm_core.solver.fixed_step import RK4, Euler, FixedStepMethod, Heun2, Midpoint
from fm_core.solver.karras import karras_time_grid
from fm_core.solver.ode_solver import ODESolver
from fm_core.solver.registry import METHODS, get_method
from fm_core.solver.solver import Solver
from fm_core.solver.stochastic import EulerMaruyamaSolver
from fm_core.solver.time_grid import check_time_grid, fixed_step_grid, resolve_time_grid

__all__ = [
    "METHODS",
    "RK4",
    "Dopri5",
    "Euler",
    "EulerMaruyamaSolver",
    "ExactDivergence",
    "FixedStepMethod",
    "FlowMapSolver",
    "Heun2",
    "HutchinsonDivergence",
    "Midpoint",
    "ODESolver",
    "Solver",
    "check_time_grid",
    "fixed_step_grid",
    "get_method",
    "karras_time_grid",
    "resolve_time_grid",
]
