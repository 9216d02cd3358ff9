import pytest
import torch

from fm_discrete import MaskedPosterior
from fm_text.objective import FlowObjective, ar_inputs


class _Const(torch.nn.Module):
    """A 'network' with fixed random logits per position (no parameters needed for these checks)."""

    def __init__(self, vocab: int, length: int) -> None:
        super().__init__()
        self.logits = torch.randn(length, vocab, generator=torch.Generator().manual_seed(1))

    def forward(self, x, t):
        return self.logits.expand(x.shape[0], -1, -1).clone()


def test_posterior_copies_unmasked_tokens_and_never_predicts_the_mask():
    model = MaskedPosterior(_Const(7, 5), 6, copy_unmasked=True)
    x = torch.tensor([[0, 6, 3, 6, 2]])
    p = model(x, torch.zeros(1)).softmax(-1)
    assert torch.all(p[..., 6] == 0)
    for i in (0, 2, 4):
        assert p[0, i, x[0, i]] == 1.0
    assert torch.all(p[0, 1, :6] > 0)  # a masked position may become any token but the mask


@pytest.mark.parametrize("n", [1.0, 2.0])
def test_time_samplings_estimate_the_same_elbo(n):
    """The three time samplings are importance-weighted estimates of one integral."""
    torch.manual_seed(0)
    model = MaskedPosterior(_Const(9, 6), 8, copy_unmasked=True)
    x_1 = torch.randint(0, 8, (512, 6))
    means = {}
    for sampling in ("uniform", "kappa", "elbo"):
        obj = FlowObjective(
            source="mask",
            vocab_size=9,
            mask_id=8,
            scheduler_n=n,
            loss="gkl",
            time_sampling=sampling,
        )
        g = torch.Generator().manual_seed(0)
        means[sampling] = torch.stack([obj.loss(model, x_1, g) for _ in range(20)]).mean().item()
    assert means["kappa"] == pytest.approx(means["elbo"], rel=0.05)
    assert means["uniform"] == pytest.approx(means["elbo"], rel=0.1)


def test_ar_inputs_shift_by_one():
    x = torch.tensor([[5, 6, 7]])
    assert ar_inputs(x, 0).tolist() == [[0, 5, 6]]
