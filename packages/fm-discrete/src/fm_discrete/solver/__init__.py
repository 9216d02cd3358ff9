"""Discrete solvers (mirrors ``flow_matching.solver`` for the discrete names)."""

from fm_discrete.solver.euler import MixtureDiscreteEulerSolver
from fm_discrete.solver.guidance import guided_scores

__all__ = [
    "MixtureDiscreteEulerSolver",
    "guided_scores",
]
