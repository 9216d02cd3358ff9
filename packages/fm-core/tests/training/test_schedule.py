import io
import itertools
import math

import pytest
import torch

from fm_core.training import warmup_cosine_schedule


def _lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_to_the_floor_and_flat_afterwards():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    sched = warmup_cosine_schedule(opt, warmup_steps=3, total_steps=13, min_lr_ratio=0.1)
    lrs = _lrs(sched, opt, 20)
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.5])
    assert lrs[3] == pytest.approx(2.0)
    mid = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert lrs[8] == pytest.approx(2.0 * mid)
    assert lrs[13:] == pytest.approx([0.2] * 7)
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))


def test_state_dict_loads_with_weights_only_and_continues():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = warmup_cosine_schedule(opt, warmup_steps=2, total_steps=10)
    _lrs(sched, opt, 5)
    buffer = io.BytesIO()
    torch.save(sched.state_dict(), buffer)
    buffer.seek(0)
    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched2 = warmup_cosine_schedule(opt2, warmup_steps=2, total_steps=10)
    sched2.load_state_dict(torch.load(buffer, weights_only=True))
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    assert _lrs(sched2, opt2, 4) == pytest.approx(_lrs(sched, opt, 4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"warmup_steps": -1, "total_steps": 5}, "warmup_steps"),
        ({"warmup_steps": 6, "total_steps": 5}, "total_steps"),
        ({"warmup_steps": 1, "total_steps": 5, "min_lr_ratio": 1.5}, "min_lr_ratio"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    with pytest.raises(ValueError, match=match):
        warmup_cosine_schedule(opt, **kwargs)
