"""Guidance: classifier-free guidance (a guided model wrapper, label dropout for training) and
training-free posterior sampling for linear inverse problems (ΠGDM for flows)."""

from fm_core.guidance.cfg import CFGScaledModel
from fm_core.guidance.inverse import PiGDMGuidedModel
from fm_core.guidance.label_dropout import drop_labels

__all__ = ["CFGScaledModel", "PiGDMGuidedModel", "drop_labels"]
