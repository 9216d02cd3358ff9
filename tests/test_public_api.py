"""The reference-compatible surface: names, where they import from, and their signatures.

A change to a public name or signature fails here and must be made on purpose. Signatures of the
names shared with ``flow_matching`` 1.0.10 must start with the reference's parameters, in order;
our additions come after them and have defaults.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

# module -> names it must export (each package's top level exports all of its mirrors' names)
PUBLIC = {
    "fm_core.path.scheduler": [
        "CondOTScheduler",
        "ConvexScheduler",
        "CosineScheduler",
        "LinearVPScheduler",
        "PolynomialConvexScheduler",
        "ScheduleTransformedModel",
        "Scheduler",
        "SchedulerOutput",
        "VPScheduler",
    ],
    "fm_core.path": ["AffineProbPath", "CondOTProbPath", "PathSample", "ProbPath"],
    "fm_core.utils": [
        "ModelWrapper",
        "categorical",
        "expand_tensor_like",
        "gradient",
        "unsqueeze_to_match",
    ],
    "fm_core.solver": ["FlowMapSolver", "ODESolver", "Solver"],
    "fm_core.loss": ["FlowMatchingLoss", "MeanFlowLoss", "flow_matching_loss"],
    "fm_core.guidance": ["CFGScaledModel", "PiGDMGuidedModel", "drop_labels"],
    "fm_core.adaptation": [
        "AdjointMatchingLoss",
        "adjoint_matching_coefficient",
        "ancestral_step",
        "lean_adjoint",
        "memoryless_eta",
        "memoryless_sample",
        "velocity_to_x1",
    ],
    "fm_core.coupling": ["ExactOTCoupling", "SinkhornOTCoupling", "CouplingSample"],
    "fm_core.time_sampling": [
        "UniformTimeSampler",
        "LogitNormalTimeSampler",
        "LogNormalSigmaTimeSampler",
        "TimePairSampler",
    ],
    "fm_discrete.path": ["DiscretePathSample", "MixtureDiscreteProbPath"],
    "fm_discrete.loss": ["MixturePathGeneralizedKL"],
    "fm_discrete.solver": ["MixtureDiscreteEulerSolver"],
    "fm_riemann.path": ["GeodesicProbPath"],
    "fm_riemann.solver": ["RiemannianODESolver"],
    "fm_riemann.manifolds": ["Euclidean", "FlatTorus", "Manifold", "Sphere", "geodesic"],
}
TOP_LEVEL = {"fm_core", "fm_discrete", "fm_riemann"}

# (our object, the reference's) for every shared callable whose signature must match
SHARED = [
    ("fm_core.path.AffineProbPath", "flow_matching.path.AffineProbPath"),
    (
        "fm_core.path.scheduler.PolynomialConvexScheduler",
        "flow_matching.path.scheduler.PolynomialConvexScheduler",
    ),
    ("fm_core.path.scheduler.VPScheduler", "flow_matching.path.scheduler.VPScheduler"),
    (
        "fm_core.path.scheduler.ScheduleTransformedModel",
        "flow_matching.path.scheduler.ScheduleTransformedModel",
    ),
    ("fm_core.utils.ModelWrapper", "flow_matching.utils.ModelWrapper"),
    ("fm_core.utils.expand_tensor_like", "flow_matching.utils.expand_tensor_like"),
    ("fm_core.utils.unsqueeze_to_match", "flow_matching.utils.unsqueeze_to_match"),
    ("fm_core.utils.gradient", "flow_matching.utils.gradient"),
    ("fm_core.utils.categorical", "flow_matching.utils.categorical"),
    ("fm_core.solver.ODESolver", "flow_matching.solver.ODESolver"),
    ("fm_discrete.path.MixtureDiscreteProbPath", "flow_matching.path.MixtureDiscreteProbPath"),
    ("fm_discrete.loss.MixturePathGeneralizedKL", "flow_matching.loss.MixturePathGeneralizedKL"),
    (
        "fm_discrete.solver.MixtureDiscreteEulerSolver",
        "flow_matching.solver.MixtureDiscreteEulerSolver",
    ),
    ("fm_riemann.path.GeodesicProbPath", "flow_matching.path.GeodesicProbPath"),
    ("fm_riemann.solver.RiemannianODESolver", "flow_matching.solver.RiemannianODESolver"),
    ("fm_riemann.manifolds.geodesic", "flow_matching.utils.manifolds.geodesic"),
]
METHODS = [
    "sample",
    "compute_likelihood",
    "forward",
    "posterior_to_velocity",
    "target_to_velocity",
    "epsilon_to_velocity",
    "velocity_to_target",
    "epsilon_to_target",
    "velocity_to_epsilon",
    "target_to_epsilon",
    "snr_inverse",
    "kappa_inverse",
]


def _resolve(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module", PUBLIC)
def test_names_import_from_mirror_and_top_level(module):
    mod = importlib.import_module(module)
    top = importlib.import_module(module.split(".")[0])
    for name in PUBLIC[module]:
        obj = getattr(mod, name)
        assert name in mod.__all__, f"{module}.__all__ lacks {name}"
        assert getattr(top, name) is obj, f"{top.__name__}.{name} differs from {module}.{name}"


@pytest.mark.parametrize("package", sorted(TOP_LEVEL))
def test_star_import_works(package):
    """Every name in __all__ exists (the reference's solver package exports one it never imports)."""
    namespace: dict = {}
    exec(f"from {package} import *", namespace)
    mod = importlib.import_module(package)
    assert set(mod.__all__) <= set(namespace)


def _params(fn):
    return [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _has_var_keyword(fn):
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("ours", "theirs"), SHARED, ids=[s[0] for s in SHARED])
def test_signature_extends_reference(ours, theirs):
    ours, theirs = _resolve(ours), _resolve(theirs)
    pairs = [(ours, theirs)] if not inspect.isclass(ours) else [(ours.__init__, theirs.__init__)]
    if inspect.isclass(ours):
        pairs += [(getattr(ours, m), getattr(theirs, m)) for m in METHODS if hasattr(theirs, m)]
    for mine, ref in pairs:
        if ref is object.__init__:
            continue
        mine_p, ref_p = _params(mine), _params(ref)
        names = [p.name for p in mine_p]
        assert names[: len(ref_p)] == [p.name for p in ref_p], (
            f"{mine.__qualname__}: parameters {names} do not start with the reference's "
            f"{[p.name for p in ref_p]}"
        )
        for extra in mine_p[len(ref_p) :]:
            assert extra.default is not inspect.Parameter.empty, (
                f"{mine.__qualname__}: added parameter {extra.name!r} needs a default"
            )
        if _has_var_keyword(ref):
            assert _has_var_keyword(mine), (
                f"{mine.__qualname__} must accept **kwargs like the reference"
            )
