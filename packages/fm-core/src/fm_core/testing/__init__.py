"""Shared test suites that every implementation of the fm interface passes.

fm-core's own tests subclass these, and so do fm-discrete and fm-riemann, so that every path,
scheduler and solver is held to the same properties. Requires pytest.

Example:
    >>> from fm_core.testing import SchedulerTests
    >>> class TestMyScheduler(SchedulerTests):
    ...     @pytest.fixture
    ...     def scheduler(self):
    ...         return MyScheduler()
"""

from fm_core.testing.contract import compile_fullgraph, fresh_dynamo, run_torchrun
from fm_core.testing.flow_map import GaussianFlowMap
from fm_core.testing.ode import ConvergenceOrderTests, LikelihoodTests
from fm_core.testing.path import ContinuousProbPathTests, ProbPathTests
from fm_core.testing.scheduler import ConvexSchedulerTests, SchedulerTests
from fm_core.testing.solver import GaussianFlow, ReversibleSolverTests, SolverTests

__all__ = [
    "ContinuousProbPathTests",
    "ConvergenceOrderTests",
    "ConvexSchedulerTests",
    "GaussianFlow",
    "GaussianFlowMap",
    "LikelihoodTests",
    "ProbPathTests",
    "ReversibleSolverTests",
    "SchedulerTests",
    "SolverTests",
    "compile_fullgraph",
    "fresh_dynamo",
    "run_torchrun",
]
