import pytest
import torch

from fm_text.model import KVCache, ModelConfig, TextTransformer


def _net(causal: bool) -> TextTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, context=12, dim=32, depth=2, heads=2, causal=causal)
    net = TextTransformer(cfg).eval()
    with torch.no_grad():  # leave adaLN-Zero's zeros so that every path carries signal
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def test_flow_model_is_bidirectional_and_time_conditioned():
    net = _net(causal=False)
    x = torch.randint(0, 50, (2, 12))
    out = net(x, torch.tensor([0.1, 0.9]))
    assert out.shape == (2, 12, 50)
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 50
    assert not torch.allclose(net(y, torch.tensor([0.1, 0.9]))[:, 0], out[:, 0])
    assert not torch.allclose(net(x, torch.tensor([0.5, 0.5])), out)


def test_causal_model_ignores_the_future_and_kv_cache_matches():
    net = _net(causal=True)
    x = torch.randint(0, 50, (3, 12))
    full = net(x)
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 50
    torch.testing.assert_close(net(y)[:, :6], full[:, :6])
    cache = KVCache(net.config, 3, x.device, torch.float32)
    steps = [net(x[:, :5], cache=cache)] + [net(x[:, i : i + 1], cache=cache) for i in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="heads"):
        ModelConfig(vocab_size=10, context=8, dim=30, heads=4)
    net = _net(causal=False)
    with pytest.raises(ValueError, match="context"):
        net(torch.zeros(1, 13, dtype=torch.long), torch.zeros(1))
