"""Probability paths (mirrors ``flow_matching.path``)."""

from fm_core.path.affine import AffineProbPath, CondOTProbPath
from fm_core.path.path import ProbPath
from fm_core.path.path_sample import PathSample

__all__ = ["AffineProbPath", "CondOTProbPath", "PathSample", "ProbPath"]
