"""Discrete solvers (mirrors ``flow_matching.solver`` for the discrete names)."""

from fm_discrete.solver.euler import MixtureDiscreteEulerSolver
from fm_discrete.solver.guidance import guided_scores
from fm_discrete.solver.masked import MASKED_METHODS, MaskedDiffusionSampler

__all__ = [
    "MASKED_METHODS",
    "MaskedDiffusionSampler",
    "MixtureDiscreteEulerSolver",
    "guided_scores",
]
