"""Discrete probability paths (mirrors ``flow_matching.path`` for the discrete names)."""

from fm_discrete.path.metric import BetaSchedule, MetricDiscreteProbPath, PolynomialBetaSchedule
from fm_discrete.path.mixture import MixtureDiscreteProbPath, posterior_to_velocity
from fm_discrete.path.path_sample import DiscretePathSample

__all__ = [
    "BetaSchedule",
    "DiscretePathSample",
    "MetricDiscreteProbPath",
    "MixtureDiscreteProbPath",
    "PolynomialBetaSchedule",
    "posterior_to_velocity",
]
