import pytest
import torch

from fm_core.training import EMA


def test_ema_follows_the_exponential_average_of_parameters_and_buffers():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = EMA(net, decay=0.9)
    ema.update(net)  # first update copies
    expected = {k: v.detach().clone().float() for k, v in net.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        net.train()(torch.randn(8, 3))  # moves the BatchNorm running stats
        ema.update(net)
        for k, v in net.state_dict().items():
            if v.dtype.is_floating_point:
                expected[k] = 0.9 * expected[k] + 0.1 * v.float()
    for k, v in ema.module.state_dict().items():
        if v.dtype.is_floating_point:
            torch.testing.assert_close(v, expected[k], rtol=1e-6, atol=1e-6)
    assert int(ema.n_averaged) == 4
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_unwraps_compiled_models():
    net = torch.nn.Linear(2, 2)
    ema = EMA(torch.compile(net), decay=0.5)
    assert isinstance(ema.module, torch.nn.Linear)
    assert set(ema.module.state_dict()) == set(net.state_dict())


@pytest.mark.parametrize("decay", [1.0, -0.1, 2])
def test_bad_decay_is_rejected(decay):
    with pytest.raises(ValueError, match="decay"):
        EMA(torch.nn.Linear(1, 1), decay=decay)
