import pytest
import torch
from torch import nn

from fm_core.guidance import CFGScaledModel
from fm_core.utils import ModelWrapper

NUM_CLASSES = 5


class LabelNet(nn.Module):
    """A deterministic conditional field that counts its calls."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(NUM_CLASSES + 1, 3)
        self.calls = 0
        self.batch_sizes = []

    def forward(self, x, t, label, scale=None):
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        out = torch.tanh(x) * (1 + t[:, None]) + self.emb(label)
        return out if scale is None else out * scale[:, None]


def _inputs(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, 3, generator=g),
        torch.rand(b, generator=g),
        torch.randint(0, NUM_CLASSES, (b,), generator=g),
    )


@pytest.fixture
def net():
    torch.manual_seed(0)
    return LabelNet()


def test_zero_scale_is_conditional_model(net):
    x, t, y = _inputs()
    guided = CFGScaledModel(net, 0.0, NUM_CLASSES)
    torch.testing.assert_close(guided(x=x, t=t, label=y), net(x=x, t=t, label=y))


@pytest.mark.parametrize("w", [0.5, 3.0, -1.0])
def test_formula_against_two_separate_calls(net, w):
    x, t, y = _inputs()
    guided = CFGScaledModel(ModelWrapper(net), w, NUM_CLASSES)
    cond = net(x=x, t=t, label=y)
    uncond = net(x=x, t=t, label=torch.full_like(y, NUM_CLASSES))
    torch.testing.assert_close(guided(x=x, t=t, label=y), (1 + w) * cond - w * uncond)


def test_one_model_call_per_forward_and_extras(net):
    x, t, y = _inputs()
    scale = torch.rand(4)
    guided = CFGScaledModel(net, 2.0, NUM_CLASSES)
    net.calls = 0
    out = guided(x=x, t=t, label=y, scale=scale)
    assert net.calls == 1 and net.batch_sizes[-1] == 8
    cond = net(x=x, t=t, label=y, scale=scale)
    uncond = net(x=x, t=t, label=torch.full_like(y, NUM_CLASSES), scale=scale)
    torch.testing.assert_close(out, 3 * cond - 2 * uncond)
    # A 0-dim time (what ODE solvers pass) stays 0-dim; a per-call scale overrides.
    t0 = torch.tensor(0.3)
    out0 = guided(x=x, t=t0, label=y, guidance_scale=0.5)
    expected = 1.5 * net(x=x, t=t0, label=y) - 0.5 * net(
        x=x, t=t0, label=torch.full_like(y, NUM_CLASSES)
    )
    torch.testing.assert_close(out0, expected)


def test_custom_label_key_and_tensor_null_label():
    class EmbNet(nn.Module):
        def forward(self, x, t, cond):
            return x * cond.sum(dim=1, keepdim=True)

    x, t, _ = _inputs()
    cond = torch.randn(4, 6)
    null = torch.zeros(6)
    guided = CFGScaledModel(EmbNet(), 1.0, null, label_key="cond")
    torch.testing.assert_close(guided(x=x, t=t, cond=cond), 2 * x * cond.sum(1, keepdim=True))


def test_bad_arguments(net):
    x, t, y = _inputs()
    with pytest.raises(ValueError, match="guidance_scale"):
        CFGScaledModel(net, float("inf"), NUM_CLASSES)
    with pytest.raises(TypeError, match="null_label"):
        CFGScaledModel(net, 1.0, None)
    with pytest.raises(TypeError, match="model"):
        CFGScaledModel(lambda x, t: x, 1.0, 0)
    guided = CFGScaledModel(net, 1.0, NUM_CLASSES)
    with pytest.raises(ValueError, match="'label'"):
        guided(x=x, t=t)
    with pytest.raises(ValueError, match="label must have shape"):
        guided(x=x, t=t, label=y[:3])
    with pytest.raises(ValueError, match="null_label"):
        CFGScaledModel(net, 1.0, torch.zeros(3))(x=x, t=t, label=y)
