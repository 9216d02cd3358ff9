"""Adapting a trained flow: reward fine-tuning with Adjoint Matching.

``memoryless_sample`` draws trajectories of the memoryless SDE of a velocity model,
``lean_adjoint`` solves the lean adjoint backwards along them, and ``AdjointMatchingLoss``
regresses the fine-tuned velocity's difference from the base on it (the maths is in
``docs/fm-core/adaptation.md``). Models and rewards are plain callables.
"""

from fm_core.adaptation.adjoint_matching import (
    AdjointMatchingLoss,
    adjoint_matching_coefficient,
    lean_adjoint,
)
from fm_core.adaptation.memoryless import (
    ancestral_step,
    memoryless_eta,
    memoryless_sample,
    velocity_to_x1,
)

__all__ = [
    "AdjointMatchingLoss",
    "adjoint_matching_coefficient",
    "ancestral_step",
    "lean_adjoint",
    "memoryless_eta",
    "memoryless_sample",
    "velocity_to_x1",
]
