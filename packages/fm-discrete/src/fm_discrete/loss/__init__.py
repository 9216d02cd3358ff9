"""Discrete losses and likelihood bounds (mirrors ``flow_matching.loss`` for the discrete names)."""

from fm_discrete.loss.cross_entropy import MixturePathCrossEntropy
from fm_discrete.loss.elbo import ELBOResult, MixturePathELBO
from fm_discrete.loss.generalized_kl import MixturePathGeneralizedKL
from fm_discrete.loss.metric_kl import MetricPathGeneralizedKL

__all__ = [
    "ELBOResult",
    "MetricPathGeneralizedKL",
    "MixturePathCrossEntropy",
    "MixturePathELBO",
    "MixturePathGeneralizedKL",
]
