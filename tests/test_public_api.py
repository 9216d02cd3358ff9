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


# ---------------------------------------------------------------------------------------------
# The frozen public API (issue 16 step 6): each package's and each public subpackage's ``__all__``
# exactly. A name that leaks (a helper re-exported by accident) or disappears fails here; whoever
# adds or removes a public name on purpose updates this list in the same change. ``fm_core.ext``
# is the one documented extension namespace for sibling packages (checks, dispatch, reductions,
# the Gumbel-max sampler); internals (``*_torch`` twins, ``gumbel_argmax``, ``check_*``) appear in
# no other list.
FROZEN_TEXT = """
fm_core:
    AdjointMatchingLoss AffineProbPath CFGScaledModel CondOTProbPath CondOTScheduler
    ConvexScheduler CosineScheduler Coupling CouplingSample EulerMaruyamaSolver ExactOTCoupling
    FlowMapSolver FlowMatchingLoss LinearVPScheduler LogNormalSigmaTimeSampler
    LogitNormalTimeSampler MeanFlowLoss ModelWrapper ODESolver PathSample PiGDMGuidedModel
    PolynomialConvexScheduler ProbPath ReflowCoupling ScheduleTransformedModel Scheduler
    SchedulerOutput SinkhornOTCoupling Solver TimePairSampler TimeSampler UniformTimeSampler VPScheduler
    __version__ adjoint_matching_coefficient ancestral_step auction_assignment categorical
    drop_labels expand_tensor_like flow_matching_loss generate_reflow_pairs gradient
    karras_time_grid lean_adjoint
    memoryless_eta memoryless_sample sinkhorn_plan squared_euclidean_cost unsqueeze_to_match
    velocity_to_x1
fm_core.adaptation:
    AdjointMatchingLoss adjoint_matching_coefficient ancestral_step lean_adjoint memoryless_eta
    memoryless_sample velocity_to_x1
fm_core.coupling:
    Coupling CouplingSample ExactOTCoupling ReflowCoupling SinkhornOTCoupling auction_assignment
    generate_reflow_pairs sinkhorn_plan squared_euclidean_cost
fm_core.ext:
    BACKENDS REDUCTIONS check_backend check_batch_size check_choice check_finite check_floating
    check_log_density check_open_unit check_reduction check_same_device check_same_shape
    check_tensor check_time check_time_range gumbel_argmax mean_over_coordinates reduce_loss
    resolve_backend value_checks_enabled
fm_core.guidance:
    CFGScaledModel PiGDMGuidedModel drop_labels
fm_core.loss:
    FlowMatchingLoss MeanFlowLoss flow_matching_loss
fm_core.path:
    AffineProbPath CondOTProbPath PathSample ProbPath
fm_core.path.scheduler:
    CondOTScheduler ConvexScheduler CosineScheduler LinearVPScheduler PolynomialConvexScheduler
    ScheduleTransformedModel Scheduler SchedulerOutput VPScheduler
fm_core.solver:
    Divergence Dopri5 Euler EulerMaruyamaSolver ExactDivergence FixedStepMethod FlowMapSolver
    Heun2 HutchinsonDivergence Midpoint ODESolver RK4 Solver karras_time_grid
fm_core.testing:
    ContinuousProbPathTests ConvergenceOrderTests ConvexSchedulerTests GaussianFlow GaussianFlowMap
    LikelihoodTests ProbPathTests ReversibleSolverTests SchedulerTests SolverTests compile_fullgraph
    fresh_dynamo run_torchrun
fm_core.time_sampling:
    LogNormalSigmaTimeSampler LogitNormalTimeSampler TimePairSampler TimeSampler
    UniformTimeSampler
fm_core.training:
    CLIParser CheckpointError CheckpointState Checkpointer DistributedContext EMA MetricsLogger
    RunDirectory RunError UsageError add_hidden_alias atomic_path capture_rng_state exit_process
    explicit_options init_distributed load_weights plot_metrics progress_bar read_metrics
    restore_rng_state run_cli seed_everything seed_step step_seed unwrap_model
    warmup_cosine_schedule write_json_atomic write_text_atomic
fm_core.utils:
    ModelWrapper categorical expand_tensor_like get_value_checks gradient set_value_checks
    unsqueeze_to_match value_checks
fm_discrete:
    BetaSchedule DiscretePathSample ELBOResult MaskedDiffusionSampler MaskedPosterior
    MetricDiscreteProbPath MetricPathGeneralizedKL
    MixtureDiscreteEulerSolver MixtureDiscreteProbPath MixturePathCrossEntropy MixturePathELBO
    MixturePathGeneralizedKL PolynomialBetaSchedule __version__ forbid_token mask_like
    mask_source_p mixture_times posterior_to_velocity sample_source stratified_uniform
    uniform_source_p
fm_discrete.loss:
    ELBOResult MetricPathGeneralizedKL MixturePathCrossEntropy MixturePathELBO
    MixturePathGeneralizedKL
fm_discrete.path:
    BetaSchedule DiscretePathSample MetricDiscreteProbPath MixtureDiscreteProbPath
    PolynomialBetaSchedule posterior_to_velocity
fm_discrete.solver:
    MASKED_METHODS MaskedDiffusionSampler MixtureDiscreteEulerSolver guided_scores
fm_riemann:
    Euclidean FlatTorus GeodesicProbPath Lorentz Manifold PoincareBall ProductManifold
    ProjectToTangent RiemannianFlowMatchingLoss RiemannianODESolver SO3 Sphere Stereographic
    SymmetricPositiveDefinite __version__ geodesic
fm_riemann.loss:
    RiemannianFlowMatchingLoss
fm_riemann.manifolds:
    Euclidean FlatTorus Lorentz Manifold PoincareBall ProductManifold SO3 Sphere Stereographic
    SymmetricPositiveDefinite geodesic
fm_riemann.path:
    GeodesicProbPath PathSample ProbPath
fm_riemann.solver:
    RiemannianODESolver Solver
fm_riemann.utils:
    ModelWrapper ProjectToTangent
fm_kernels:
    BACKENDS HAS_TRITON INTERPRETED __version__ fm_loss generalized_kl generalized_kl_linear
    get_value_checks mixture_euler_step reference select_backend set_value_checks
fm_kernels.reference:
    fm_loss generalized_kl generalized_kl_linear mixture_euler_step
"""


def _parse_frozen(text):
    """``module:`` lines, each followed by indented lines of space-separated names."""
    frozen, module = {}, None
    for line in text.splitlines():
        if line and not line[0].isspace():
            module = line.rstrip(":")
            frozen[module] = []
        elif line.strip():
            frozen[module] += line.split()
    return frozen


FROZEN = _parse_frozen(FROZEN_TEXT)


# Modules (not packages) whose ``__all__`` is frozen too; every public *package* must be listed.
_FROZEN_MODULES = {"fm_core.ext", "fm_core.time_sampling", "fm_kernels.reference"}


@pytest.mark.parametrize("module", sorted(FROZEN))
def test_all_matches_the_frozen_list(module):
    names = sorted(importlib.import_module(module).__all__)
    leaked = sorted(set(names) - set(FROZEN[module]))
    removed = sorted(set(FROZEN[module]) - set(names))
    assert not leaked and not removed, (
        f"{module}.__all__ changed: new {leaked}, gone {removed}; update FROZEN_TEXT "
        "in tests/test_public_api.py if that was on purpose"
    )
    assert len(names) == len(set(names)), f"{module}.__all__ lists a name twice"


@pytest.mark.parametrize("package", ["fm_core", "fm_discrete", "fm_riemann", "fm_kernels"])
def test_every_public_subpackage_is_frozen(package):
    import pkgutil

    top = importlib.import_module(package)
    public = set()
    for info in pkgutil.walk_packages(top.__path__, f"{package}."):
        if info.ispkg and not any(p.startswith("_") for p in info.name.split(".")):
            public.add(info.name)
    missing = sorted(public - set(FROZEN))
    assert not missing, f"public subpackages without a frozen __all__: {missing}"
    assert _FROZEN_MODULES <= set(FROZEN)


def test_internals_are_not_public():
    """Torch twins, samplers and checks live behind ``_`` modules or ``fm_core.ext`` only."""
    for module, names in FROZEN.items():
        if module == "fm_core.ext":
            continue
        bad = [
            n
            for n in names
            if n.endswith("_torch") or n.startswith("check_") or n == "gumbel_argmax"
        ]
        assert not bad, f"{module} exports internals {bad}"
