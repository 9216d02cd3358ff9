"""The migration guide lists every name and every keyword-argument difference a user meets."""

from __future__ import annotations

import importlib
import inspect
import math
import re
from pathlib import Path

import pytest
import torch

pytest.importorskip("flow_matching")

GUIDE = (Path(__file__).resolve().parents[1] / "docs" / "migration.md").read_text()
REFERENCE_MODULES = [
    "flow_matching.path",
    "flow_matching.path.scheduler",
    "flow_matching.solver",
    "flow_matching.loss",
    "flow_matching.utils",
    "flow_matching.utils.manifolds",
]
# (ours, the reference's, methods whose **model_extras reach the model)
SOLVERS = [
    ("fm_core.ODESolver", "flow_matching.solver.ODESolver", ["sample", "compute_likelihood"]),
    (
        "fm_discrete.MixtureDiscreteEulerSolver",
        "flow_matching.solver.MixtureDiscreteEulerSolver",
        ["sample"],
    ),
    ("fm_riemann.RiemannianODESolver", "flow_matching.solver.RiemannianODESolver", ["sample"]),
]


def _resolve(dotted):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _mentioned(name: str) -> bool:
    return re.search(rf"`[^`]*\b{re.escape(name)}\b[^`]*`", GUIDE) is not None


@pytest.mark.parametrize("module", REFERENCE_MODULES)
def test_every_reference_name_is_in_the_guide(module):
    missing = [n for n in importlib.import_module(module).__all__ if not _mentioned(n)]
    assert not missing, f"docs/migration.md does not mention {module}: {missing}"


@pytest.mark.parametrize(("ours", "ref", "methods"), SOLVERS)
def test_every_extra_keyword_that_shadows_a_model_extra_is_listed(ours, ref, methods):
    table = GUIDE[GUIDE.index("## Extra keyword arguments") :]
    for method in methods:
        mine = inspect.signature(getattr(_resolve(ours), method)).parameters
        theirs = inspect.signature(getattr(_resolve(ref), method)).parameters
        extra = [k for k, p in mine.items() if k not in theirs and p.kind is not p.VAR_KEYWORD]
        row = next(
            line for line in table.splitlines() if f"`{ours.split('.')[-1]}.{method}`" in line
        )
        for name in extra:
            assert f"`{name}`" in row, f"{ours}.{method}: `{name}` missing from the guide's table"


def test_an_extra_named_like_ours_is_captured_as_documented():
    from fm_core import ODESolver

    seen = []

    def model(x, t, **extras):
        seen.append(sorted(extras))
        return -x

    g = torch.Generator().manual_seed(0)
    log_p0 = lambda x: -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)
    ODESolver(model).compute_likelihood(
        torch.randn(2, 2), log_p0, 0.5, generator=g, label=3, exact_divergence=True
    )
    assert seen and all(keys == ["label"] for keys in seen)  # `generator` stayed with the solver
    # the documented workaround: bind it in a wrapper
    ODESolver(lambda x, t, **kw: model(x, t, generator=g, **kw)).sample(torch.zeros(2, 2), 0.5)
    assert seen[-1] == ["generator"]
