"""Block diffusion (``--block-size``): attention structure, no leaks, the bound, cached sampling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fm_text.config import TrainConfig
from fm_text.model import KVCache, ModelConfig, TextTransformer
from fm_text.model.transformer import block_attention_mask
from fm_text.objective import FlowObjective
from fm_text.run import load_run
from fm_text.sample import sample_run

V, MASK = 12, 11


def _net(block_size: int, length: int = 8, conv: int = 3, seed: int = 0) -> TextTransformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=V, context=length, dim=16, depth=2, heads=2, conv_kernel=conv,
        block_size=block_size,
    )  # fmt: skip
    net = TextTransformer(cfg)
    with torch.no_grad():  # adaLN-Zero and the zero conv start inert: wake every branch
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return net.eval()


def test_attention_mask_structure():
    m = block_attention_mask(6, 2)
    blk = torch.arange(6) // 2
    for i, j in itertools.product(range(6), range(6)):
        assert m[i, j] == (blk[i] == blk[j])  # noised -> noised: same block only
        assert m[i, 6 + j] == (blk[j] < blk[i])  # noised -> clean: earlier blocks
        assert not m[6 + i, j]  # clean never sees noised
        assert m[6 + i, 6 + j] == (blk[j] <= blk[i])  # clean -> clean: blocks up to its own
    with pytest.raises(ValueError):
        block_attention_mask(6, 4)


@pytest.mark.parametrize("conv", [0, 1, 3, 5])
def test_no_leak_from_later_blocks_or_own_clean_tokens(conv):
    net = _net(block_size=2, conv=conv)
    x_1 = torch.randint(0, MASK, (1, 8))
    x_t = x_1.clone()
    x_t[0, [2, 5]] = MASK
    base = net(x_t, clean=x_1)
    # Block 1 (positions 2, 3): changing later blocks (noised or clean) or block 1's own clean
    # tokens leaves its logits unchanged.
    x_1b, x_tb = x_1.clone(), x_t.clone()
    x_1b[0, 2:] = (x_1b[0, 2:] + 1) % MASK
    x_tb[0, 4:] = (x_tb[0, 4:] + 3) % MASK
    other = net(x_tb, clean=x_1b)
    torch.testing.assert_close(other[:, :4], base[:, :4])
    # ... and an earlier clean block does change them (the conditioning is there).
    for pos in (0, 1):
        x_1c = x_1.clone()
        x_1c[0, pos] = (x_1c[0, pos] + 1) % MASK
        assert not torch.allclose(net(x_t, clean=x_1c)[:, 2:4], base[:, 2:4])


def test_one_block_is_the_plain_model_at_t_zero():
    """At B = L the block model is the full-sequence masked model (time 0, same weights)."""
    net = _net(block_size=8)
    plain = TextTransformer(ModelConfig(**{**net.config.to_dict(), "block_size": 0})).eval()
    plain.load_state_dict(net.state_dict())
    x_1 = torch.randint(0, MASK, (3, 8))
    x_t = torch.where(torch.rand(3, 8) < 0.5, x_1, MASK)
    torch.testing.assert_close(net(x_t, clean=x_1), plain(x_t, torch.zeros(3)))
    # ... hence the same validation bound, draw for draw.
    obj = dict(source="mask", vocab_size=V, mask_id=MASK, scheduler_n=1.0, loss="ce")
    block = FlowObjective(**obj, time_sampling="uniform", block_size=8)
    full = FlowObjective(**obj, time_sampling="uniform")
    got = block.block_sequence_nll(block.posterior(net), [x_1], 4)
    at_zero = lambda x, t: plain(x, torch.zeros_like(t))
    want = full.elbo(4).evaluate(full.posterior(at_zero), [x_1]).sequence_nll
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("conv", [3, 5])
def test_cached_block_decoding_matches_the_training_pass(conv):
    """Reading block b against the cache of the clean prefix gives the training pass' logits,
    with and without the finished block's commit fused into the call (the convolution reads
    the clean positions before the block: 1 or 2, i.e. up to a whole earlier block)."""
    net = _net(block_size=2, conv=conv)
    x_1 = torch.randint(0, MASK, (2, 8))
    x_t = x_1.clone()
    x_t[:, 4] = MASK
    want = net(x_t, clean=x_1)[:, 4:6]
    cache = KVCache(net.config, 2, torch.device("cpu"), torch.float32)
    net(x_1[:, :2], cache=cache)
    net(x_1[:, 2:4], cache=cache, commit=0)  # a read that keeps nothing
    assert cache.length == 2
    net(x_1[:, 2:4], cache=cache)
    torch.testing.assert_close(net(x_t[:, 4:6], cache=cache, commit=0), want)
    # fused: commit block 1 and read block 2 in one call
    cache2 = KVCache(net.config, 2, torch.device("cpu"), torch.float32)
    net(x_1[:, :2], cache=cache2)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:2, 4:] = False
    both = torch.cat((x_1[:, 2:4], x_t[:, 4:6]), 1)
    torch.testing.assert_close(net(both, cache=cache2, commit=2, mask=mask)[:, 2:], want)
    assert cache2.length == 4


def test_block_elbo_bounds_an_enumerable_target():
    """A posterior that is exact for a known joint over 2 blocks of 1 token: the bound is the NLL.

    With the exact conditional posterior, the masked ELBO of a one-token block is tight in
    expectation (-log p(x_b | x_<b)), so the block bound's mean is the exact NLL of the joint.
    """
    joint = torch.tensor([[0.5, 0.1], [0.1, 0.3]])  # p(x_0, x_1) over tokens {0, 1}

    def net(x, t, clean):
        logits = torch.full((*x.shape, V), -torch.inf)
        logits[:, 0, :2] = joint.sum(1).log()
        logits[:, 1, :2] = (joint[clean[:, 0]] / joint[clean[:, 0]].sum(-1, keepdim=True)).log()
        return logits

    obj = FlowObjective(
        source="mask", vocab_size=V, mask_id=MASK, scheduler_n=1.0, loss="gkl",
        time_sampling="uniform", block_size=1,
    )  # fmt: skip
    x = torch.tensor(list(itertools.product([0, 1], [0, 1])))
    copies = 1500  # each row its own draws: average the Monte-Carlo estimates
    nll = obj.block_sequence_nll(obj.posterior(net), [x.repeat(copies, 1)], 8)
    nll = nll.view(copies, 4).mean(0)
    want = -joint[x[:, 0], x[:, 1]].log().double()
    torch.testing.assert_close(nll, want, rtol=0.05, atol=0.0)
    entropy = -float((joint * joint.log()).sum())  # 1.168 nats
    assert math.isclose(float((joint.flatten().double() * nll).sum()), entropy, rel_tol=0.03)


def test_config_rules():
    with pytest.raises(ValueError, match="block_size"):
        TrainConfig(block_size=3)  # context 64
    with pytest.raises(ValueError, match="block_size"):
        TrainConfig(model="ar", block_size=4)
    with pytest.raises(ValueError, match="block_size"):
        TrainConfig(source="uniform", block_size=4)
    with pytest.raises(ValueError, match="block_size"):
        ModelConfig(vocab_size=10, context=8, causal=True, block_size=2)


@pytest.fixture(scope="module")
def block_run(tmp_path_factory, train_tiny):
    out = tmp_path_factory.mktemp("runs") / "block"
    return train_tiny(out, "--steps", "3", "--eval-every", "3", "--block-size", "4")


def test_block_run_trains_and_keeps_prompts(block_run):
    run = load_run(block_run)
    assert run.config.block_size == 4 and run.net.config.block_size == 4
    tok = run.tokenizer
    prompt = "def f(x):"
    ids = tok.encode(prompt)
    assert sample_run(run, 1, length=8).sampler == "left_threshold"  # auto on block runs
    for sampler, length in [
        ("confidence", 16),
        ("random", 14),
        ("first_hitting", 11),
        ("auto", 13),
    ]:
        out = sample_run(run, 3, length=length, prompt=prompt, sampler=sampler, seed=1)
        assert out.tokens.shape == (3, length)
        assert (out.tokens[:, : len(ids)] == torch.tensor(ids)).all()
        assert not (out.tokens == tok.mask_id).any()
    a = sample_run(run, 2, seed=3).tokens
    assert torch.equal(a, sample_run(run, 2, seed=3).tokens)
    with pytest.raises(ValueError, match="suffix"):
        sample_run(run, 1, suffix="x")
    with pytest.raises(ValueError, match="euler"):
        sample_run(run, 1, sampler="euler")


def test_block_sampler_uses_block_size_calls_per_block(block_run, monkeypatch):
    """One model call per decoding step (the commit is fused): 4 steps x 4 blocks = 16 calls."""
    run = load_run(block_run)
    calls = []
    forward = run.net.forward
    monkeypatch.setattr(run.net, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    sample_run(run, 2, length=16, sampler="random")
    assert len(calls) == 16


@pytest.mark.parametrize(("threshold", "expected"), [(1.0, 16), (1e-9, 4)])
def test_left_threshold_calls_adapt_to_confidence(block_run, monkeypatch, threshold, expected):
    """Threshold 1: one position per call (exact left to right), 16 calls for 4 blocks of 4; a
    threshold every token passes decodes a block per call."""
    run = load_run(block_run)
    calls = []
    forward = run.net.forward
    monkeypatch.setattr(run.net, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    out = sample_run(run, 2, length=16, sampler="left_threshold", threshold=threshold)
    assert len(calls) == expected
    assert out.calls_per_token == expected / 16
    assert not (out.tokens == run.tokenizer.mask_id).any()


@pytest.mark.parametrize("block_size", [0, 2])
def test_left_to_right_nll_is_a_normalised_likelihood(block_size):
    """Summed over every sequence (11 tokens, 4 positions), exp(-NLL) is 1: an exact likelihood."""
    net = _net(block_size, length=4)
    obj = FlowObjective(
        source="mask", vocab_size=V, mask_id=MASK, scheduler_n=1.0, loss="ce",
        time_sampling="uniform", block_size=block_size,
    )  # fmt: skip
    every = torch.tensor(list(itertools.product(range(MASK), repeat=4)))
    nll = obj.left_to_right_nll(net, every.split(4096))
    assert math.isclose(float((-nll).exp().sum()), 1.0, rel_tol=1e-4)


def test_left_to_right_nll_is_what_left_threshold_samples():
    """The sampler at threshold 1, one step per token, draws the law the NLL scores (121 states)."""
    from fm_discrete import MaskedDiffusionSampler

    net = _net(0, length=2)
    obj = FlowObjective(
        source="mask", vocab_size=V, mask_id=MASK, scheduler_n=1.0, loss="ce",
        time_sampling="uniform",
    )  # fmt: skip
    every = torch.tensor(list(itertools.product(range(MASK), repeat=2)))
    law = (-obj.left_to_right_nll(net, [every])).exp()
    sampler = MaskedDiffusionSampler(obj.posterior(net), V, MASK, model_output="logits")
    n = 100_000
    with torch.no_grad():
        x = sampler.sample(
            torch.full((n, 2), MASK), 2, method="left_threshold", threshold=1.0,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
    freq = torch.bincount(x[:, 0] * MASK + x[:, 1], minlength=MASK**2).double() / n
    assert 0.5 * float((freq - law).abs().sum()) <= 0.03  # sampling noise alone: about 0.014
