"""The objectives: guidance costs one batched model call per evaluation; every option trains."""

from __future__ import annotations

import pytest
import torch

from fm_image.config import SCHEDULERS, TIME_SAMPLERS, TrainConfig
from fm_image.flows import ContinuousFlow, StepSlice
from fm_image.models import build_model


class _Counting(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.batches = net, []

    def forward(self, x, t, label=None):
        self.batches.append(x.shape[0])
        return self.net(x, t, label)


@pytest.mark.parametrize(("scale", "batch"), [(0.0, 6), (1.5, 12)])
def test_guidance_is_one_batched_call_per_evaluation(scale, batch):
    flow = ContinuousFlow(TrainConfig(), (1, 8, 8), 10, levels=17)
    model = _Counting(build_model("tiny", channels=1, image_size=(8, 8), num_classes=10))
    images, nfe = flow.sample(model, torch.tensor([0, 1, 2, 3, 4, -1]), nfe=8, method="midpoint",
                              cfg_scale=scale)  # fmt: skip
    assert nfe == 8 and model.batches == [batch] * 8
    assert images.dtype == torch.uint8
    levels = torch.round(torch.arange(17) * 255 / 16).to(torch.uint8)
    assert torch.isin(images, levels).all()  # rounded to the data's 17 intensity levels


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("time_sampler", TIME_SAMPLERS)
def test_every_scheduler_and_time_sampler_gives_a_finite_loss(scheduler, time_sampler):
    cfg = TrainConfig(scheduler=scheduler, time_sampler=time_sampler)
    flow = ContinuousFlow(cfg, (1, 8, 8), 10, levels=17)
    model = build_model("tiny", channels=1, image_size=(8, 8), num_classes=10)
    g = torch.Generator().manual_seed(0)
    loss = flow.loss(model, torch.rand(8, 1, 8, 8) * 2 - 1, torch.arange(8), StepSlice(8, 0, 8), g)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()


def test_a_rank_slice_sees_the_global_batch_noise():
    """Rank 1 of 2 draws the same noise for its rows as one process does for those rows."""
    cfg = TrainConfig(label_dropout=0.5)
    flow = ContinuousFlow(cfg, (1, 8, 8), 10, levels=17)
    seen = {}

    def spy(name):
        def model(x, t, label):
            seen[name] = (x.clone(), t.clone(), label.clone())
            return torch.zeros_like(x, requires_grad=True)

        return model

    x_1, y = torch.rand(8, 1, 8, 8), torch.arange(8)
    flow.loss(spy("one"), x_1, y, StepSlice(8, 0, 8), torch.Generator().manual_seed(5))
    flow.loss(spy("rank1"), x_1[4:], y[4:], StepSlice(8, 4, 8), torch.Generator().manual_seed(5))
    for a, b in zip(seen["one"], seen["rank1"]):
        torch.testing.assert_close(a[4:], b, rtol=0, atol=0)
