"""fm-discrete: discrete flow matching on token sequences.

Mixture paths, the CTMC Euler sampler, the generalized-KL loss and the ELBO. Every public name is
importable from here and from the submodule that mirrors the reference ``flow_matching``
(``fm_discrete.path``, ``fm_discrete.solver``, ``fm_discrete.loss``).
"""

from importlib.metadata import version as _version

from fm_discrete.loss import (
    ELBOResult,
    MetricPathGeneralizedKL,
    MixturePathCrossEntropy,
    MixturePathELBO,
    MixturePathGeneralizedKL,
)
from fm_discrete.path import (
    BetaSchedule,
    DiscretePathSample,
    MetricDiscreteProbPath,
    MixtureDiscreteProbPath,
    PolynomialBetaSchedule,
    posterior_to_velocity,
)
from fm_discrete.posterior import MaskedPosterior, forbid_token
from fm_discrete.solver import MaskedDiffusionSampler, MixtureDiscreteEulerSolver
from fm_discrete.source import mask_like, mask_source_p, sample_source, uniform_source_p
from fm_discrete.time import mixture_times, stratified_uniform

__version__ = _version("fm-discrete")

__all__ = [
    "BetaSchedule",
    "DiscretePathSample",
    "ELBOResult",
    "MaskedDiffusionSampler",
    "MaskedPosterior",
    "MetricDiscreteProbPath",
    "MetricPathGeneralizedKL",
    "MixtureDiscreteEulerSolver",
    "MixtureDiscreteProbPath",
    "MixturePathCrossEntropy",
    "MixturePathELBO",
    "MixturePathGeneralizedKL",
    "PolynomialBetaSchedule",
    "__version__",
    "forbid_token",
    "mask_like",
    "mask_source_p",
    "mixture_times",
    "posterior_to_velocity",
    "sample_source",
    "stratified_uniform",
    "uniform_source_p",
]
