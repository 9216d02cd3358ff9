"""Probability paths on manifolds (mirrors ``flow_matching.path``)."""

from fm_core.path import PathSample, ProbPath
from fm_riemann.path.geodesic import GeodesicProbPath

__all__ = ["GeodesicProbPath", "PathSample", "ProbPath"]
