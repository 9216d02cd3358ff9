"""fm-core: flow matching in PyTorch — the shared interface of the fm suite.

Every public name is importable from here and from the submodule that mirrors the reference
``flow_matching`` library (``fm_core.path``, ``fm_core.path.scheduler``, ``fm_core.utils``, ...).
"""

from importlib.metadata import version as _version

from fm_core.path import AffineProbPath, CondOTProbPath, PathSample, ProbPath
from fm_core.path.scheduler import (
    CondOTScheduler,
    ConvexScheduler,
    CosineScheduler,
    LinearVPScheduler,
    PolynomialConvexScheduler,
    Scheduler,
    SchedulerOutput,
    ScheduleTransformedModel,
    VPScheduler,
)
from fm_core.utils import (
    ModelWrapper,
    categorical,
    expand_tensor_like,
    gradient,
    unsqueeze_to_match,
)

__version__ = _version("fm-core")

__all__ = [
    "AffineProbPath",
    "CondOTProbPath",
    "CondOTScheduler",
    "ConvexScheduler",
    "CosineScheduler",
    "LinearVPScheduler",
    "ModelWrapper",
    "PathSample",
    "PolynomialConvexScheduler",
    "ProbPath",
    "ScheduleTransformedModel",
    "Scheduler",
    "SchedulerOutput",
    "VPScheduler",
    "__version__",
    "categorical",
    "expand_tensor_like",
    "gradient",
    "unsqueeze_to_match",
]
