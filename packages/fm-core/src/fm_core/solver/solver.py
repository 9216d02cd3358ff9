"""The solver interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

__all__ = ["Solver"]


class Solver(ABC, nn.Module):
    """Something that turns source samples into target samples by integrating a model in time.

    Implementations: ``ODESolver`` (fm_core), ``MixtureDiscreteEulerSolver`` (fm_discrete),
    ``RiemannianODESolver`` (fm_riemann). ``fm_core.testing.SolverTests`` holds the shared properties.
    Solvers are ``nn.Module`` so that the wrapped model's parameters and device follow them.
    """

    @abstractmethod
    def sample(self, x_init: Tensor, step_size: float | None, **kwargs) -> Tensor:
        """Integrate from ``x_init`` (shape ``[B, ...]``) over a time grid and return the end state."""
