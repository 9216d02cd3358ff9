"""Solvers (mirrors ``flow_matching.solver``).

The method registry (``fm_core.solver._registry``), the Butcher tableaux (``_tableau``), the
integration loop (``integrate``) and the time-grid helpers (``time_grid``) are internals; the
public surface is the solvers, the divergence estimators, the method classes and the grids.
"""

from fm_core.solver.divergence import Divergence, ExactDivergence, HutchinsonDivergence
from fm_core.solver.dopri5 import Dopri5
from fm_core.solver.fixed_step import RK4, Euler, FixedStepMethod, Heun2, Midpoint
from fm_core.solver.flow_map import FlowMapSolver
from fm_core.solver.karras import karras_time_grid
from fm_core.solver.ode_solver import ODESolver
from fm_core.solver.solver import Solver
from fm_core.solver.stochastic import EulerMaruyamaSolver

__all__ = [
    "RK4",
    "Divergence",
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
    "karras_time_grid",
]
