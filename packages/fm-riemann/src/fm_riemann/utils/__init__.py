"""Utilities (mirrors ``flow_matching.utils``)."""

from fm_core.utils import ModelWrapper
from fm_riemann.utils.model_wrapper import ProjectToTangent

__all__ = ["ModelWrapper", "ProjectToTangent"]
