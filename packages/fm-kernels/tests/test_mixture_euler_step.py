from __future__ import annotations

import pytest
import torch

import fm_kernels
from fm_kernels import reference
from fm_kernels.testing import DEVICE


def _chi_square(samples, probs):
    counts = torch.bincount(samples.flatten().cpu(), minlength=probs.numel()).double()
    expected = probs.double().cpu() * samples.numel()
    return (((counts - expected) ** 2) / expected).sum().item()


@pytest.mark.parametrize(
    ("dtype", "scores_are_logits"),
    [(torch.float32, True), (torch.float64, True), (torch.bfloat16, True), (torch.float32, False)],
)
def test_categorical_frequencies(dtype, scores_are_logits):
    # V = 20 in chunks of 16 (the second 4/16 full); 4096 rows in 16 tile programs of 256 rows.
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20, generator=g, dtype=torch.float64).to(dtype).double()
    probs = torch.softmax(logits, dim=0)
    scores = (logits if scores_are_logits else probs * 3).to(DEVICE, dtype).expand(4096, 20)
    x_t = torch.zeros(4096, dtype=torch.long, device=DEVICE)
    out = fm_kernels.mixture_euler_step(
        scores,
        x_t,
        torch.ones(4096, device=DEVICE),
        seed=3,
        scores_are_logits=scores_are_logits,
        block_size=16,
    )
    # chi-square with 19 degrees of freedom: P(X > 55) ~ 2e-5.
    assert _chi_square(out, probs) < 55


def test_jump_probability_and_independence():
    n = 4096
    logits = torch.zeros(n, 5, device=DEVICE)
    logits[:, 4] = 30.0  # the draw is token 4 almost surely
    x_t = torch.zeros(n, dtype=torch.long, device=DEVICE)
    jump = torch.full((n,), 0.3, device=DEVICE)
    out = fm_kernels.mixture_euler_step(logits, x_t, jump, seed=11)
    assert set(out.unique().tolist()) <= {0, 4}
    rate = (out == 4).double().mean().item()
    assert abs(rate - 0.3) < 5 * (0.3 * 0.7 / n) ** 0.5


def test_edge_cases_jump_prob_zero_and_one():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(64, 40, generator=g).to(DEVICE)
    x_t = torch.randint(0, 40, (64,), generator=g).to(DEVICE)
    stay = fm_kernels.mixture_euler_step(scores, x_t, torch.zeros(64, device=DEVICE), seed=5)
    assert torch.equal(stay, x_t)
    one_hot = torch.full((64, 40), -1e9, device=DEVICE)
    one_hot[torch.arange(64), (x_t + 1) % 40] = 0.0
    moved = fm_kernels.mixture_euler_step(one_hot, x_t, torch.ones(64, device=DEVICE), seed=5)
    assert torch.equal(moved, (x_t + 1) % 40)


def test_deterministic_noncontiguous_empty():
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(40, 30, generator=g).to(DEVICE).T  # [30, 40] view, column-major
    x_t = torch.zeros(30, dtype=torch.int32, device=DEVICE)
    jump = torch.full((30,), 0.7, device=DEVICE)
    a = fm_kernels.mixture_euler_step(scores, x_t, jump, seed=9)
    assert a.dtype == torch.int32
    assert torch.equal(a, fm_kernels.mixture_euler_step(scores.contiguous(), x_t, jump, seed=9))
    assert not torch.equal(a, fm_kernels.mixture_euler_step(scores, x_t, jump, seed=10))
    with pytest.raises(ValueError, match="scores must hold at least one row"):
        fm_kernels.mixture_euler_step(scores[:0], x_t[:0], jump[:0], seed=0)


@pytest.mark.parametrize(
    ("bad", "logits", "match"),
    [
        (float("nan"), True, "NaN"),
        (float("nan"), False, "finite and non-negative"),
        (-0.1, False, "finite and non-negative"),
    ],
)
def test_bad_scores_raise_on_cpu(bad, logits, match):
    # Before: NaN logits became token 0 and negative probabilities were drawn from silently.
    scores = torch.full((3, 5), 0.2)
    scores[1, 2] = bad
    x_t = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match=match):
        fm_kernels.mixture_euler_step(
            scores, x_t, torch.ones(3), seed=0, scores_are_logits=logits, backend="torch"
        )


def test_reference_frequencies():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    out = reference.mixture_euler_step(
        probs.expand(4000, 4),
        torch.zeros(4000, dtype=torch.long),
        torch.ones(4000),
        seed=0,
        scores_are_logits=False,
    )
    assert _chi_square(out, probs) < 25  # 3 degrees of freedom: P(X > 25) ~ 2e-5


def test_bad_arguments():
    scores = torch.randn(4, 6, device=DEVICE)
    x_t = torch.zeros(4, dtype=torch.long, device=DEVICE)
    jump = torch.rand(4, device=DEVICE)
    with pytest.raises(ValueError, match="scores"):
        fm_kernels.mixture_euler_step(scores[0], x_t, jump, seed=0)
    with pytest.raises(TypeError, match="x_t"):
        fm_kernels.mixture_euler_step(scores, x_t.float(), jump, seed=0)
    with pytest.raises(ValueError, match="jump_prob"):
        fm_kernels.mixture_euler_step(scores, x_t, jump[:3], seed=0)
