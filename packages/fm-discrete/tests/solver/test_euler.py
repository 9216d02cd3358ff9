import sys

import pytest
import torch

from fm_core.path.scheduler import CondOTScheduler
from fm_core.path.scheduler.convex import PolynomialConvexScheduler
from fm_core.testing import SolverTests
from fm_discrete import MixtureDiscreteEulerSolver, MixtureDiscreteProbPath, mask_source_p
from fm_discrete import solver as solver_mod
from fm_discrete.testing import ExactFactorisedPosterior

DATA, MASK, VOCAB, LENGTH = 5, 5, 6, 3
N = 20_000


class TestMixtureDiscreteEulerSolverShared(SolverTests):
    """The shared solver properties; the solver has no ``method`` argument, one call per step."""

    methods = {None: 1}  # noqa: RUF012

    @pytest.fixture
    def solver(self):
        path = MixtureDiscreteProbPath(CondOTScheduler())
        q = torch.softmax(torch.randn(LENGTH, DATA, generator=torch.Generator().manual_seed(0)), -1)
        q = torch.cat([q, torch.zeros(LENGTH, 1)], -1)
        p0 = mask_source_p(VOCAB, MASK)
        return MixtureDiscreteEulerSolver(ExactFactorisedPosterior(q, p0, path), path, VOCAB, p0)

    def make_x_init(self, batch_size, dtype):  # token ids: dtype does not apply
        return torch.full((batch_size, LENGTH), MASK)

    def sample_kwargs(self):  # the same draws on every call
        return {"generator": torch.Generator().manual_seed(0)}

    def test_end_state_shape_and_dtype(self, solver):
        """Replaces the shared float32/float64 cases (token ids have no float dtype to vary, and
        ``isfinite`` of an integer tensor is always true): every mask is resolved at t = 1."""
        x = self.make_x_init(64, torch.float32)
        out = self.sample(solver, x, None, step_size=0.25)
        assert out.shape == x.shape and out.dtype == torch.long
        assert ((out >= 0) & (out < DATA)).all()  # no mask left, only data ids

    def test_source_on_another_device_is_a_clear_error(self):
        path = MixtureDiscreteProbPath(CondOTScheduler())
        p0 = mask_source_p(VOCAB, MASK).to("meta")
        solver = MixtureDiscreteEulerSolver(lambda x, t: None, path, VOCAB, p0)
        with pytest.raises(ValueError, match="source_distribution_p is on meta"):
            solver.sample(torch.full((2, LENGTH), MASK), 0.5)

    def test_model_output_on_another_device_is_a_clear_error(self):
        path = MixtureDiscreteProbPath(CondOTScheduler())
        solver = MixtureDiscreteEulerSolver(
            lambda x, t: torch.zeros(*x.shape, VOCAB, device="meta"), path, VOCAB, mask_token=MASK
        )
        with pytest.raises(ValueError, match="model output is on meta"):
            solver.sample(torch.full((2, LENGTH), MASK), 0.5)

    def test_guidance_counts_two_calls_per_step(self, solver):
        x = self.make_x_init(2, torch.float32)
        solver.sample(x, 0.25, guidance_scale=1.0, unconditional_model_extras={})
        assert solver.last_nfe == 8


def _uniform_p0():
    return torch.cat([torch.full((DATA,), 1.0 / DATA), torch.zeros(1)])


def _tv(x, q):
    freq = torch.stack([torch.bincount(x[:, i], minlength=VOCAB) for i in range(LENGTH)]).double()
    return 0.5 * (freq / x.shape[0] - q).abs().sum(-1)


def _x_init(p0, g):
    return torch.multinomial(p0.double(), N * LENGTH, replacement=True, generator=g).view(N, LENGTH)


@pytest.mark.parametrize(
    ("source", "output", "mask_token"),
    [("mask", "probs", None), ("mask", "logits", MASK), ("uniform", "logits", None)],
)
def test_reproduces_factorised_target(path, target, source, output, mask_token):
    p0 = mask_source_p(VOCAB, MASK) if source == "mask" else _uniform_p0()
    model = ExactFactorisedPosterior(target, p0, path, output=output)
    solver = MixtureDiscreteEulerSolver(
        model, path, VOCAB, p0, mask_token=mask_token, model_output=output
    )
    g = torch.Generator().manual_seed(0)
    x = solver.sample(_x_init(p0, g), step_size=1 / 64, generator=g)
    assert x.shape == (N, LENGTH) and x.dtype == torch.long
    assert (_tv(x, target) <= 0.02).all()


@pytest.mark.parametrize("source", ["mask", "uniform"])
def test_corrector_keeps_target(target, source):
    path = MixtureDiscreteProbPath(PolynomialConvexScheduler(2))
    p0 = mask_source_p(VOCAB, MASK) if source == "mask" else _uniform_p0()
    model = ExactFactorisedPosterior(target, p0, path)
    mask_token = MASK if source == "mask" else None
    solver = MixtureDiscreteEulerSolver(model, path, VOCAB, p0, mask_token=mask_token)
    g = torch.Generator().manual_seed(1)
    x = solver.sample(_x_init(p0, g)[: N // 2], step_size=1 / 32, div_free=2.0, generator=g)
    assert (_tv(x, target) <= 0.035).all()


def test_infill_never_touches_fixed_tokens(path, target):
    p0 = mask_source_p(VOCAB, MASK)
    model = ExactFactorisedPosterior(target, p0, path)
    solver = MixtureDiscreteEulerSolver(model, path, VOCAB, mask_token=MASK)
    tokens = torch.randint(0, DATA, (500, LENGTH))
    fixed = torch.zeros(500, LENGTH, dtype=torch.bool)
    fixed[:, 0] = True  # a prompt
    fixed[::2, 2] = True  # a suffix on half the rows
    for kwargs in ({}, {"div_free": 1.0}):
        out = solver.infill(tokens, fixed, step_size=0.1, **kwargs)
        assert torch.equal(out[fixed], tokens[fixed])
        assert not (out == MASK).any()
    # The same through sample(); a remasking corrector still leaves fixed positions alone.
    x_init = torch.where(fixed, tokens, MASK)
    inter = solver.sample(x_init, 0.1, div_free=3.0, fixed_mask=fixed, return_intermediates=True)
    assert inter.shape == (2, 500, LENGTH)
    assert all(torch.equal(s[fixed], tokens[fixed]) for s in inter)


def test_guidance(path, target):
    p0 = mask_source_p(VOCAB, MASK)

    class Conditional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cond = ExactFactorisedPosterior(target, p0, path)
            flat = torch.cat([torch.full((LENGTH, DATA), 1.0 / DATA), torch.zeros(LENGTH, 1)], -1)
            self.uncond = ExactFactorisedPosterior(flat.double(), p0, path)

        def forward(self, x, t, label):
            return self.cond(x, t) if label else self.uncond(x, t)

    solver = MixtureDiscreteEulerSolver(Conditional(), path, VOCAB, mask_token=MASK)
    x0 = torch.full((N, LENGTH), MASK)
    run = lambda w, seed: solver.sample(
        x0,
        1 / 16,
        guidance_scale=w,
        unconditional_model_extras={"label": False},
        generator=torch.Generator().manual_seed(seed),
        label=True,
    )
    plain = solver.sample(x0, 1 / 16, generator=torch.Generator().manual_seed(5), label=True)
    assert torch.equal(run(0.0, 5), plain)
    # Guidance sharpens towards the conditional: likely tokens gain mass.
    guided = run(2.0, 5)
    top = target.argmax(-1)
    gain = [
        (guided[:, i] == top[i]).double().mean() - (plain[:, i] == top[i]).double().mean()
        for i in range(LENGTH)
    ]
    assert all(g > 0.02 for g in gain)
    with pytest.raises(ValueError, match="unconditional_model_extras is required"):
        solver.sample(x0, 0.5, guidance_scale=1.0, label=True)


def test_guidance_with_equal_models_is_exact(path, target):
    p0 = mask_source_p(VOCAB, MASK)
    model = ExactFactorisedPosterior(target, p0, path)
    solver = MixtureDiscreteEulerSolver(model, path, VOCAB, mask_token=MASK)
    g = torch.Generator().manual_seed(2)
    x = solver.sample(
        torch.full((N, LENGTH), MASK),
        1 / 16,
        guidance_scale=3.0,
        unconditional_model_extras={},
        generator=g,
    )
    assert (_tv(x, target) <= 0.02).all()


def test_time_grid_and_intermediates(path, target):
    p0 = mask_source_p(VOCAB, MASK)
    solver = MixtureDiscreteEulerSolver(ExactFactorisedPosterior(target, p0, path), path, VOCAB)
    x0 = torch.full((10, LENGTH), MASK)
    out = solver.sample(x0, None, time_grid=torch.linspace(0, 1, 9), return_intermediates=True)
    assert out.shape == (9, 10, LENGTH)
    assert torch.equal(out[0], x0) and not (out[-1] == MASK).any()
    half = solver.sample(x0, 0.1, time_grid=[0.0, 0.5])
    assert half.shape == x0.shape
    assert solver_mod.MixtureDiscreteEulerSolver is MixtureDiscreteEulerSolver


def test_bad_inputs(path, target):
    p0 = mask_source_p(VOCAB, MASK)
    model = ExactFactorisedPosterior(target, p0, path)
    solver = MixtureDiscreteEulerSolver(model, path, VOCAB)
    x0 = torch.full((4, LENGTH), MASK)
    with pytest.raises(ValueError, match="x_init holds token id 6 outside the vocabulary"):
        solver.sample(torch.full((4, LENGTH), 6), 0.1)
    with pytest.raises(TypeError, match="x_init must be an integer tensor"):
        solver.sample(x0.float(), 0.1)
    with pytest.raises(ValueError, match="fixed_mask must have the shape of x_init"):
        solver.sample(x0, 0.1, fixed_mask=torch.zeros(4, 2, dtype=torch.bool))
    with pytest.raises(TypeError, match="fixed_mask must be a bool tensor"):
        solver.sample(x0, 0.1, fixed_mask=torch.zeros(4, LENGTH))
    with pytest.raises(ValueError, match="div_free != 0 needs source_distribution_p"):
        solver.sample(x0, 0.1, div_free=1.0)
    with pytest.raises(ValueError, match="time_grid must be increasing"):
        solver.sample(x0, 0.1, time_grid=[1.0, 0.0])
    bad_shape = MixtureDiscreteEulerSolver(lambda x, t: torch.ones(4, LENGTH, 5) / 5, path, VOCAB)
    with pytest.raises(ValueError, match="model output must have shape"):
        bad_shape.sample(x0, 0.1)
    not_probs = MixtureDiscreteEulerSolver(lambda x, t: torch.ones(4, LENGTH, VOCAB), path, VOCAB)
    with pytest.raises(ValueError, match="must sum to one"):
        not_probs.sample(x0, 0.1)
    with pytest.raises(
        ValueError, match=r"source_distribution_p must have shape \[vocabulary_size\]"
    ):
        MixtureDiscreteEulerSolver(model, path, VOCAB, torch.ones(4) / 4)
    with pytest.raises(ValueError, match="source_distribution_p must sum to one"):
        MixtureDiscreteEulerSolver(model, path, VOCAB, torch.ones(VOCAB))
    with pytest.raises(ValueError, match="mask_token must be an id in"):
        MixtureDiscreteEulerSolver(model, path, VOCAB, mask_token=VOCAB)
    with pytest.raises(ValueError, match="one-hot at mask_token"):
        MixtureDiscreteEulerSolver(model, path, VOCAB, _uniform_p0(), mask_token=MASK)
    with pytest.raises(ValueError, match="model_output must be one of"):
        MixtureDiscreteEulerSolver(model, path, VOCAB, model_output="scores")
    with pytest.raises(TypeError, match="path must be a MixtureDiscreteProbPath"):
        MixtureDiscreteEulerSolver(model, None, VOCAB)


def test_backend_without_kernels(path, target, monkeypatch):
    monkeypatch.setitem(sys.modules, "fm_kernels", None)
    p0 = mask_source_p(VOCAB, MASK)
    model = ExactFactorisedPosterior(target, p0, path)
    x0 = torch.full((4, LENGTH), MASK)
    out = MixtureDiscreteEulerSolver(model, path, VOCAB, backend="auto").sample(x0, 0.25)
    assert not (out == MASK).any()
    with pytest.raises(ImportError, match="pip install fm-kernels"):
        MixtureDiscreteEulerSolver(model, path, VOCAB, backend="triton").sample(x0, 0.25)
