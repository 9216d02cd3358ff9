"""Solvers on manifolds (mirrors ``flow_matching.solver``).

The methods (Butcher tableaux with their order) are fm-core's: one integrator serves both
``ODESolver`` and ``RiemannianODESolver``.
"""

from fm_core.solver import Solver
from fm_riemann.solver.riemannian_ode_solver import RiemannianODESolver

__all__ = ["RiemannianODESolver", "Solver"]
