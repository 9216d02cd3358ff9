import itertools
import math

import pytest
import torch

from fm_discrete import MixturePathELBO, mask_source_p, uniform_source_p
from fm_discrete.testing import ExactFactorisedPosterior as ExactPosterior

LENGTH, MASK, VOCAB = 3, 5, 6


def _all_sequences(q):
    seqs = torch.tensor(list(itertools.product(range(5), repeat=LENGTH)))
    nll = -sum(q[i, seqs[:, i]].log() for i in range(LENGTH))
    return seqs, nll


def test_mask_source_elbo_is_tight_for_exact_posterior(path, target, output="logits"):
    p0 = mask_source_p(VOCAB, MASK)
    model = ExactPosterior(target, p0, path, output=output)
    seqs, nll = _all_sequences(target)
    elbo = MixturePathELBO(path, p0, num_time_samples=256, seed=3, model_output=output)
    res = elbo.evaluate(model, seqs.split(50))
    assert res.sequence_nll.shape == (125,)
    # Tight in expectation; the per-sequence estimate is a weighted average of the same log-terms.
    exact_mean = (nll * torch.exp(-nll)).sum()  # E_q[-log q] = entropy
    est_mean = (res.sequence_nll * torch.exp(-nll)).sum()
    assert abs(est_mean - exact_mean) < 0.02 * exact_mean
    assert torch.allclose(res.sequence_nll, nll, rtol=0.25)
    assert res.num_tokens == 125 * LENGTH
    assert math.isclose(res.perplexity, math.exp(res.sequence_nll.sum() / res.num_tokens))


def test_probs_output_matches_logits(path, target):
    p0 = mask_source_p(VOCAB, MASK)
    seqs, _ = _all_sequences(target)
    res = [
        MixturePathELBO(path, p0, num_time_samples=4, model_output=o)
        .evaluate(ExactPosterior(target, p0, path, output=o), [seqs])
        .sequence_nll
        for o in ("logits", "probs")
    ]
    torch.testing.assert_close(res[0], res[1], rtol=1e-4, atol=1e-4)


def test_uniform_source_elbo_bounds_nll(path, target):
    p0 = torch.cat([uniform_source_p(5), torch.zeros(1)])
    model = ExactPosterior(target, p0, path)
    seqs, nll = _all_sequences(target)
    elbo = MixturePathELBO(path, p0, num_time_samples=64, seed=0, model_output="probs")
    res = elbo.evaluate(model, [seqs])
    w = torch.exp(-nll)  # data weights q(x)
    gap = ((res.sequence_nll - nll) * w).sum()
    assert (
        gap > 0
    )  # a bound: E_q[ELBO-NLL] >= E_q[NLL], here strictly (uniform source is not tight)
    assert gap < 0.5 * (nll * w).sum()


def test_elbo_is_batch_invariant_and_seeded(path, target):
    p0 = mask_source_p(VOCAB, MASK)
    model = ExactPosterior(target, p0, path, output="logits")
    seqs, _ = _all_sequences(target)
    elbo = MixturePathELBO(path, p0, num_time_samples=4, seed=7)
    a = elbo.evaluate(model, seqs.split(7)).sequence_nll
    b = elbo.evaluate(model, seqs.split(125)).sequence_nll
    torch.testing.assert_close(a, b)
    c = MixturePathELBO(path, p0, num_time_samples=4, seed=8).evaluate(model, [seqs]).sequence_nll
    assert not torch.equal(a, c)


def test_elbo_bad_input(path):
    with pytest.raises(ValueError, match="source_distribution_p must sum to one"):
        MixturePathELBO(path, torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="num_time_samples must be a positive int"):
        MixturePathELBO(path, mask_source_p(VOCAB, MASK), num_time_samples=0)
    elbo = MixturePathELBO(path, mask_source_p(VOCAB, MASK))
    with pytest.raises(ValueError, match="x_1 holds token id 9"):
        elbo.sequence_nll(lambda x, t: None, torch.full((2, 3), 9))
