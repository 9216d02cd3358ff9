"""Schedulers $(\\alpha_t, \\sigma_t)$ (mirrors ``flow_matching.path.scheduler``)."""

from fm_core.path.scheduler.convex import CondOTScheduler, PolynomialConvexScheduler
from fm_core.path.scheduler.gaussian import CosineScheduler, LinearVPScheduler, VPScheduler
from fm_core.path.scheduler.schedule_transform import ScheduleTransformedModel
from fm_core.path.scheduler.scheduler import ConvexScheduler, Scheduler, SchedulerOutput

__all__ = [
    "CondOTScheduler",
    "ConvexScheduler",
    "CosineScheduler",
    "LinearVPScheduler",
    "PolynomialConvexScheduler",
    "ScheduleTransformedModel",
    "Scheduler",
    "SchedulerOutput",
    "VPScheduler",
]
