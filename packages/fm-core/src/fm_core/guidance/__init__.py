"""Classifier-free guidance: a guided model wrapper and label dropout for training."""

from fm_core.guidance.cfg import CFGScaledModel
from fm_core.guidance.label_dropout import drop_labels

__all__ = ["CFGScaledModel", "drop_labels"]
