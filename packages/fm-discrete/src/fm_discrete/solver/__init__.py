"""Discrete solvers (mirrors ``flow_matching.solver`` for the discrete names)."""

from fm_discrete.solver.euler import MixtureDiscreteEulerSolver
from fm_discrete.solver.guidance import guided_scores
from fm_discrete.solver.step import gumbel_argmax, mixture_euler_step_torch

__all__ = [
    "MixtureDiscreteEulerSolver",
    "guided_scores",
    "gumbel_argmax",
    "mixture_euler_step_torch",
]
