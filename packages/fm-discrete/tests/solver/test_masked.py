"""Masked-model samplers: exact ones reproduce an enumerable joint target; the others' bias is known."""

import itertools

import pytest
import torch

from fm_core.path.scheduler.convex import CondOTScheduler
from fm_discrete import MaskedDiffusionSampler, MixtureDiscreteProbPath, mask_source_p
from fm_discrete.solver.masked import MASKED_METHODS
from fm_discrete.testing import ExactJointPosterior, mixture_conditional

D, L = 3, 2  # data tokens, positions
MASK, V = D, D + 1
STATES = torch.tensor(list(itertools.product(range(D), repeat=L)))
CODE = torch.tensor([D, 1])
N = 30_000


def _joint():
    g = torch.Generator().manual_seed(7)
    q = torch.rand(D**L, generator=g, dtype=torch.float64) ** 3
    return q / q.sum()


def _model(q, output="logits"):
    path = MixtureDiscreteProbPath(CondOTScheduler())
    exact = ExactJointPosterior(
        q, STATES, mixture_conditional(path, mask_source_p(V, MASK)), V, output
    )
    # A mask source's posterior does not depend on t (kappa cancels): one time for every row,
    # so the brute force runs once per call whatever times first_hitting passes.
    return lambda x, t: exact(x, torch.full_like(t, 0.5))


def _freq(x):
    return torch.bincount((x * CODE).sum(-1), minlength=D**L).double() / x.shape[0]


def _tv(x, q):
    return float(0.5 * (_freq(x) - q).abs().sum())


@pytest.mark.parametrize(("method", "steps"), [("first_hitting", 1), ("random", L)])
def test_exact_methods_reproduce_joint_target(method, steps):
    """One position per call in any order, each from its exact posterior: exact joint samples."""
    q = _joint()
    sampler = MaskedDiffusionSampler(_model(q), V, MASK)
    x = sampler.sample(
        torch.full((N, L), MASK), steps, method=method, generator=torch.Generator().manual_seed(0)
    )
    assert not (x == MASK).any()
    assert sampler.last_nfe == L
    assert _tv(x, q) <= 0.01  # sampling noise alone is about 0.005 (9 states, 30 000 draws)


def test_parallel_decoding_factorises():
    """Decoding both positions in one call draws them independently: the product of marginals."""
    q = _joint()
    x = MaskedDiffusionSampler(_model(q), V, MASK).sample(
        torch.full((N, L), MASK), 1, method="random", generator=torch.Generator().manual_seed(1)
    )
    m = q.view(D, D)
    product = torch.outer(m.sum(1), m.sum(0)).reshape(-1)
    assert _tv(x, product) <= 0.01 and _tv(x, q) > 0.05


def test_confidence_bias_matches_closed_form():
    """Two independent positions, two steps: the more confident draw is kept, the other redrawn."""
    q1 = torch.tensor([0.55, 0.3, 0.15], dtype=torch.float64)
    q2 = torch.tensor([0.45, 0.35, 0.2], dtype=torch.float64)
    q = torch.outer(q1, q2).reshape(-1)
    expected = torch.zeros(D, D, dtype=torch.float64)
    for a, b in itertools.product(range(D), repeat=2):
        first_kept = float(sum(q2[b0] for b0 in range(D) if q1[a] >= q2[b0]))
        second_kept = float(sum(q1[a0] for a0 in range(D) if q1[a0] < q2[b]))
        expected[a, b] = q1[a] * first_kept * q2[b] + q2[b] * second_kept * q1[a]
    x = MaskedDiffusionSampler(_model(q), V, MASK).sample(
        torch.full((N, L), MASK), 2, method="confidence", generator=torch.Generator().manual_seed(2)
    )
    assert _tv(x, expected.reshape(-1)) <= 0.01
    assert float(0.5 * (expected.reshape(-1) - q).abs().sum()) > 0.03  # the bias is real


def test_remdm_keeps_factorised_target_and_remasks():
    q1 = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    q = torch.outer(q1, q1.flip(0)).reshape(-1)
    sampler = MaskedDiffusionSampler(_model(q), V, MASK)
    x = sampler.sample(
        torch.full((N // 2, L), MASK),
        16,
        method="remdm",
        eta=0.3,
        generator=torch.Generator().manual_seed(3),
    )
    assert not (x == MASK).any()
    assert _tv(x, q) <= 0.015


def test_threshold_decodes_confident_tokens_together():
    q1 = torch.tensor([0.98, 0.01, 0.01], dtype=torch.float64)
    q = torch.outer(q1, q1).reshape(-1)
    sampler = MaskedDiffusionSampler(_model(q), V, MASK)
    x = sampler.sample(torch.full((64, L), MASK), 8, method="threshold", threshold=0.9)
    assert not (x == MASK).any()
    assert sampler.last_nfe <= 2  # most rows decode both positions at the first call


def _left_threshold(q, steps, threshold, seed):
    """``N`` draws of ``left_threshold`` with the exact posterior of ``q``, and the sampler."""
    sampler = MaskedDiffusionSampler(_model(q), V, MASK)
    gen = torch.Generator().manual_seed(seed)
    x = torch.full((N, L), MASK)
    x = sampler.sample(x, steps, method="left_threshold", threshold=threshold, generator=gen)
    return x, sampler


def test_left_threshold_at_one_is_exact_left_to_right():
    """The leftmost position from its exact posterior each call: the joint, one call per position."""
    q = _joint()
    x, sampler = _left_threshold(q, 8, 1.0, seed=5)
    assert not (x == MASK).any()
    assert sampler.last_nfe == L
    assert _tv(x, q) <= 0.01


def test_left_threshold_bias_matches_closed_form():
    """Below 1, the right position goes early when its *marginal* draw is confident: the law is
    p0(a) [m 1{b = 0} + (1 - m) q(b | a)] with m = P(x1 = 0) >= threshold (closed form)."""
    p0 = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    stay = torch.tensor([0.99, 0.9, 0.97], dtype=torch.float64)  # q(b = 0 | a)
    cond = torch.stack([stay, (1 - stay) / 2, (1 - stay) / 2], dim=1)  # [a, b]
    q = (p0[:, None] * cond).reshape(-1)
    m = float((p0 * stay).sum())
    assert m >= 0.9
    expected = p0[:, None] * (
        m * torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64) + (1 - m) * cond
    )
    x, sampler = _left_threshold(q, 2, 0.9, seed=6)
    assert _tv(x, expected.reshape(-1)) <= 0.01
    assert float(0.5 * (expected.reshape(-1) - q).abs().sum()) > 0.02  # the bias is visible
    # rows that decoded both positions at once: about m of them (one call for the whole batch
    # would need every row confident; the batch makes 2 calls)
    assert sampler.last_nfe == 2


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"temperature": 0.5}, [0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38]),
        ({"top_k": 1}, [1.0, 0.0, 0.0]),
        ({"top_p": 0.6}, [0.625, 0.375, 0.0]),
    ],
)
def test_temperature_top_k_top_p(kwargs, expected):
    q1 = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    model = lambda x, t: q1.log().float().expand(*x.shape, D).clone()
    logits = lambda x, t: torch.cat([model(x, t), torch.zeros(*x.shape, 1)], -1)
    x = MaskedDiffusionSampler(logits, V, MASK).sample(
        torch.full((N, 1), MASK), 1, generator=torch.Generator().manual_seed(4), **kwargs
    )
    freq = torch.bincount(x[:, 0], minlength=D).double() / N
    torch.testing.assert_close(freq, torch.tensor(expected, dtype=torch.float64), atol=0.01, rtol=0)


@pytest.mark.parametrize("method", MASKED_METHODS)
def test_prompt_and_suffix_are_kept(method):
    q = _joint()
    x_init = torch.full((16, 5), MASK)
    x_init[:, 0], x_init[:, -1] = 1, 2
    fixed = torch.zeros(16, 5, dtype=torch.bool)
    fixed[:, 0] = fixed[:, -1] = True
    model = lambda x, t: _model(q)(x[:, 1:3], t).repeat(1, 3, 1)[:, :5]
    x = MaskedDiffusionSampler(model, V, MASK).sample(x_init, 3, method=method, fixed_mask=fixed)
    assert (x[:, 0] == 1).all() and (x[:, -1] == 2).all() and not (x == MASK).any()


def test_a_step_with_nothing_to_decode_makes_no_model_call():
    calls = []

    def model(x, t):
        calls.append(1)
        return torch.zeros(*x.shape, V)

    sampler = MaskedDiffusionSampler(model, V, MASK)
    x = sampler.sample(torch.full((2, 4), MASK), 64, method="random")
    assert not (x == MASK).any()
    # round(4 k / 64) grows at 4 of the 64 steps: the others decode nothing and call nothing
    assert sampler.last_nfe == len(calls) == 4


def test_only_the_decoded_positions_are_scored():
    sampler = MaskedDiffusionSampler(lambda x, t: torch.zeros(*x.shape, V), V, MASK)
    drawn = []
    original = sampler._logits

    def spy(x, t, extras, rows=None):
        logits = original(x, t, extras, rows)
        drawn.append(logits.shape[0])
        return logits

    sampler._logits = spy
    sampler.sample(torch.full((3, 8), MASK), 4, method="random")
    assert drawn == [6, 6, 6, 6]  # 2 of 8 positions a row per step, 3 rows
    drawn.clear()
    sampler.sample(torch.full((3, 8), MASK), 4, method="confidence")
    assert drawn == [24, 18, 12, 6]  # every masked position is scored for its confidence


def test_guidance_with_equal_models_keeps_target():
    q = _joint()
    sampler = MaskedDiffusionSampler(_model(q), V, MASK)
    x = sampler.sample(
        torch.full((N // 2, L), MASK),
        1,
        method="first_hitting",
        guidance_scale=2.0,
        unconditional_model_extras={},
        generator=torch.Generator().manual_seed(5),
    )
    assert sampler.last_nfe == 2 * L
    assert _tv(x, q) <= 0.015


def test_bad_input():
    sampler = MaskedDiffusionSampler(lambda x, t: torch.zeros(*x.shape, V), V, MASK)
    x = torch.full((2, 3), MASK)
    with pytest.raises(ValueError, match="method"):
        sampler.sample(x, 4, method="beam")
    with pytest.raises(ValueError, match="top_p"):
        sampler.sample(x, 4, top_p=0.0)
    with pytest.raises(ValueError, match="steps"):
        sampler.sample(x, 0)
    with pytest.raises(ValueError, match="unconditional_model_extras"):
        sampler.sample(x, 2, guidance_scale=1.0)
    with pytest.raises(ValueError, match="mask_token"):
        MaskedDiffusionSampler(lambda x, t: x, V, V)


@pytest.mark.parametrize("method", MASKED_METHODS)
def test_no_host_read_inside_the_loop_off_the_cpu(method, monkeypatch):
    # Off the CPU (simulated: reads are not free), neither the early stop nor the cache may read
    # device values, so the number of host reads must not grow with the number of steps.
    from torch.overrides import TorchFunctionMode

    import fm_discrete.solver.masked as masked_module

    reads_of = (
        "__bool__",
        "__int__",
        "__float__",
        "__index__",
        "item",
        "tolist",
        "equal",
        "nonzero",
    )

    class CountReads(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.n += getattr(func, "__name__", "") in reads_of
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(masked_module, "_host_reads_free", lambda x: False)
    model = lambda x, t: torch.zeros(*x.shape, V)
    counts = []
    for steps in (4, 16):
        sampler = MaskedDiffusionSampler(model, V, MASK)
        with CountReads() as reads:
            x = sampler.sample(torch.full((2, 16), MASK), steps, method=method)
        assert not (x == MASK).any()
        assert sampler.last_nfe == (16 if method == "first_hitting" else steps)  # no cache, no stop
        counts.append(reads.n)
    assert counts[0] == counts[1], counts


def test_choice_temperature_moves_confidence_order_to_random_order():
    # MaskGIT's Gumbel noise on the order: with a huge temperature the order is uniform, and one
    # position per call in uniform order is exact (as "random"); at 0 it is plain confidence,
    # whose bias on this target is real (test above).
    q = _joint()
    sampler = MaskedDiffusionSampler(_model(q), V, MASK)
    x0 = torch.full((N, L), MASK)
    noisy = sampler.sample(x0, L, method="confidence", choice_temperature=1e6,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert _tv(noisy, q) <= 0.01
    plain = sampler.sample(x0, L, method="confidence", generator=torch.Generator().manual_seed(0))
    zero = sampler.sample(x0, L, method="confidence", choice_temperature=0.0,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(plain, zero)
    assert _tv(plain, q) > 0.03
    for bad in (-1.0, float("inf"), True):
        with pytest.raises(ValueError, match="choice_temperature must be a finite number >= 0"):
            sampler.sample(x0[:2], L, method="confidence", choice_temperature=bad)
