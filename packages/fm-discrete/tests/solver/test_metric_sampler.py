"""The Euler sampler on a metric path reproduces an enumerable joint target (TV <= 0.01)."""

import itertools

import pytest
import torch

from fm_discrete import MetricDiscreteProbPath, MixtureDiscreteEulerSolver, PolynomialBetaSchedule
from fm_discrete.testing import ExactJointPosterior

V, L, N = 3, 2, 60_000
STATES = torch.tensor(list(itertools.product(range(V), repeat=L)))
CODE = torch.tensor([V, 1])


def _target():
    g = torch.Generator().manual_seed(5)
    q = torch.rand(V**L, generator=g, dtype=torch.float64) ** 3
    return q / q.sum()


def _tv(x, q):
    freq = torch.bincount((x * CODE).sum(-1), minlength=V**L).double() / x.shape[0]
    return float(0.5 * (freq - q).abs().sum())


@pytest.fixture(scope="module")
def setup():
    path = MetricDiscreteProbPath.from_embeddings(
        torch.arange(float(V)).unsqueeze(-1), PolynomialBetaSchedule(1.0, 1.0)
    )
    q = _target()
    model = ExactJointPosterior(q, STATES, path.probabilities, V)
    return path, q, model


def _grid(steps):
    # denser near t = 1, where beta_t = t / (1 - t) moves fastest
    s = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    return 1.0 - (1.0 - s) ** 2


@pytest.mark.slow  # 128 steps over 120 000 positions: about 60 s on the loaded 2-core machine
def test_sampler_reproduces_joint_target(setup):
    path, q, model = setup
    solver = MixtureDiscreteEulerSolver(model, path, V)
    g = torch.Generator().manual_seed(0)
    x_init = torch.randint(0, V, (N, L), generator=g)
    x = solver.sample(x_init, None, time_grid=_grid(128), generator=g)
    assert x.dtype == torch.long and solver.last_nfe == 128
    assert _tv(x, q) <= 0.01  # sampling noise alone: about 0.004 (9 states, 60 000 draws)
    # the uniform start is far from q: the test can fail
    assert _tv(x_init, q) > 0.2


def test_guidance_with_equal_models_keeps_target(setup):
    """Guided marginal rates with p_cond = p_uncond are the unguided rates: same target."""
    path, q, model = setup
    solver = MixtureDiscreteEulerSolver(model, path, V)
    g = torch.Generator().manual_seed(1)
    x_init = torch.randint(0, V, (N // 4, L), generator=g)
    x = solver.sample(
        x_init,
        None,
        time_grid=_grid(64),
        guidance_scale=1.5,
        unconditional_model_extras={},
        generator=g,
    )
    assert solver.last_nfe == 128
    assert _tv(x, q) <= 0.03


def test_fixed_positions_are_kept(setup):
    path, _, model = setup
    solver = MixtureDiscreteEulerSolver(model, path, V)
    x_init = torch.randint(0, V, (64, L))
    fixed = torch.zeros(64, L, dtype=torch.bool)
    fixed[:, 0] = True
    x = solver.sample(x_init, 0.1, fixed_mask=fixed)
    assert torch.equal(x[:, 0], x_init[:, 0])


def test_metric_path_rejects_mask_and_corrector(setup):
    path, _, model = setup
    with pytest.raises(ValueError, match="mask_token"):
        MixtureDiscreteEulerSolver(model, path, V, mask_token=0)
    with pytest.raises(ValueError, match="vocabulary_size"):
        MixtureDiscreteEulerSolver(model, path, V + 1)
    with pytest.raises(ValueError, match="div_free"):
        MixtureDiscreteEulerSolver(model, path, V).sample(
            torch.zeros(2, L, dtype=torch.long), 0.1, div_free=1.0
        )
