"""One value-check design in every package (issue 12, docs/fm-core/validation.md).

``fm_core.utils.checks`` holds the one switch; fm-discrete, fm-riemann and fm-kernels follow it
(fm-core links it into fm-kernels, which never imports fm-core). Bad values raise clear errors in eager mode on
CPU by default, are skipped with ``value_checks("off")``, and never run while compiling; metadata
checks (devices, empty batches) always run. The package-local ``test_compile_contract.py`` files
hold each package's compiled training and solver steps.
"""

from __future__ import annotations

import pytest
import torch

import fm_kernels
from fm_core import CondOTProbPath, CondOTScheduler, FlowMatchingLoss
from fm_core.utils import get_value_checks, value_checks
from fm_discrete import MixtureDiscreteProbPath, MixturePathGeneralizedKL
from fm_riemann import GeodesicProbPath, Sphere

V = 7


def _bad_calls():
    """One bad value per package, each raising a ValueError in eager CPU mode by default."""
    affine = CondOTProbPath()
    discrete = MixturePathGeneralizedKL(MixtureDiscreteProbPath(CondOTScheduler()))
    sphere = GeodesicProbPath(CondOTScheduler(), Sphere())
    x, logits, tokens = torch.zeros(2, 3), torch.randn(2, 4, V), torch.randint(0, V, (2, 4))
    on_sphere = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    nan_scores = torch.full((2, V), float("nan"))
    return {
        "fm_core: t = 2": lambda: affine.sample(x, x, torch.tensor([0.5, 2.0])),
        "fm_discrete: t = 2": lambda: discrete(logits, tokens, tokens, torch.tensor([0.5, 2.0])),
        "fm_riemann: off the sphere": lambda: sphere.sample(
            2 * on_sphere, on_sphere, torch.rand(2)
        ),
        "fm_kernels: NaN logits": lambda: fm_kernels.mixture_euler_step(
            nan_scores, torch.zeros(2, dtype=torch.long), torch.ones(2), seed=0, backend="torch"
        ),
    }


@pytest.mark.parametrize("case", list(_bad_calls()))
def test_one_switch_governs_every_package(case):
    call = _bad_calls()[case]
    assert get_value_checks() == "auto"
    with pytest.raises(ValueError):
        call()
    with value_checks("always"):
        with pytest.raises(ValueError):
            call()
    with value_checks("off"):
        call()  # skipped: no error, no host read
    assert get_value_checks() == "auto"


# fm-kernels' torch reference seeds a torch.Generator, which dynamo cannot trace; its checks'
# compile behaviour is tested in packages/fm-kernels/tests/test_sync_free.py.
@pytest.mark.parametrize("case", [c for c in _bad_calls() if not c.startswith("fm_kernels")])
def test_no_value_check_while_compiling(case):
    torch._dynamo.reset()
    torch.compile(_bad_calls()[case], fullgraph=True, backend="aot_eager")()


def test_metadata_checks_stay_on_with_value_checks_off():
    path, loss = CondOTProbPath(), FlowMatchingLoss(CondOTProbPath())
    x = torch.zeros(2, 3)
    with value_checks("off"):
        with pytest.raises(ValueError, match="x_0 must hold at least one sample"):
            path.sample(x[:0], x[:0], torch.zeros(0))
        with pytest.raises(ValueError, match="x_1 is on meta but x_0 is on cpu"):
            path.sample(x, x.to("meta"), torch.rand(2))
        with pytest.raises(ValueError, match="model_output must hold at least one sample"):
            loss(x[:0], x[:0], x[:0], torch.zeros(0))
