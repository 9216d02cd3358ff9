"""fm-core: flow matching in PyTorch — the shared interface of the fm suite.

Every public name is importable from here and from the submodule that mirrors the reference
``flow_matching`` library (``fm_core.path``, ``fm_core.path.scheduler``, ``fm_core.utils``, ...).
"""

from importlib.metadata import version as _version

from fm_core.adaptation import (
    AdjointMatchingLoss,
    adjoint_matching_coefficient,
    ancestral_step,
    lean_adjoint,
    memoryless_eta,
    memoryless_sample,
    velocity_to_x1,
)
from fm_core.coupling import (
    Coupling,
    CouplingSample,
    ExactOTCoupling,
    ReflowCoupling,
    SinkhornOTCoupling,
    auction_assignment,
    generate_reflow_pairs,
    sinkhorn_plan,
    squared_euclidean_cost,
)
from fm_core.guidance import CFGScaledModel, PiGDMGuidedModel, drop_labels
from fm_core.loss import FlowMatchingLoss, MeanFlowLoss, flow_matching_loss
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
from fm_core.solver import (
    EulerMaruyamaSolver,
    FlowMapSolver,
    ODESolver,
    Solver,
    karras_time_grid,
)
from fm_core.time_sampling import (
    LogitNormalTimeSampler,
    LogNormalSigmaTimeSampler,
    TimePairSampler,
    TimeSampler,
    UniformTimeSampler,
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
    "AdjointMatchingLoss",
    "AffineProbPath",
    "CFGScaledModel",
    "CondOTProbPath",
    "CondOTScheduler",
    "ConvexScheduler",
    "CosineScheduler",
    "Coupling",
    "CouplingSample",
    "EulerMaruyamaSolver",
    "ExactOTCoupling",
    "FlowMapSolver",
    "FlowMatchingLoss",
    "LinearVPScheduler",
    "LogNormalSigmaTimeSampler",
    "LogitNormalTimeSampler",
    "MeanFlowLoss",
    "ModelWrapper",
    "ODESolver",
    "PathSample",
    "PiGDMGuidedModel",
    "PolynomialConvexScheduler",
    "ProbPath",
    "ReflowCoupling",
    "ScheduleTransformedModel",
    "Scheduler",
    "SchedulerOutput",
    "SinkhornOTCoupling",
    "Solver",
    "TimePairSampler",
    "TimeSampler",
    "UniformTimeSampler",
    "VPScheduler",
    "__version__",
    "adjoint_matching_coefficient",
    "ancestral_step",
    "auction_assignment",
    "categorical",
    "drop_labels",
    "expand_tensor_like",
    "flow_matching_loss",
    "generate_reflow_pairs",
    "gradient",
    "karras_time_grid",
    "lean_adjoint",
    "memoryless_eta",
    "memoryless_sample",
    "sinkhorn_plan",
    "squared_euclidean_cost",
    "unsqueeze_to_match",
    "velocity_to_x1",
]
