"""Solvers on manifolds (mirrors ``flow_matching.solver``)."""

from fm_core.solver import Solver
from fm_riemann.solver.methods import METHODS, RungeKutta
from fm_riemann.solver.riemannian_ode_solver import RiemannianODESolver

__all__ = ["METHODS", "RiemannianODESolver", "RungeKutta", "Solver"]
