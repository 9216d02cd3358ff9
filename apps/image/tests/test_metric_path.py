"""``--flow discrete --path metric``: the intensity distance, the objective, the options."""

from __future__ import annotations

import pytest
import torch

from fm_discrete import MetricDiscreteProbPath, MixtureDiscreteProbPath
from fm_image.cli import main
from fm_image.config import TrainConfig
from fm_image.flows import DiscreteFlow, StepSlice, intensity_distance
from fm_image.models import build_model
from fm_image.run import load_run
from fm_image.train import train


def test_intensity_distance_is_the_scaled_level_difference():
    d = intensity_distance(17, "abs")
    assert d.shape == (17, 17) and float(d.max()) == 1.0
    assert float(d[3, 7]) == pytest.approx(4 / 16) and float(d[7, 3]) == float(d[3, 7])
    torch.testing.assert_close(intensity_distance(17, "square"), d.square())
    with pytest.raises(ValueError, match="distance must be one of"):
        intensity_distance(17, "hamming")


def _flow(**cfg):
    return DiscreteFlow(TrainConfig(flow="discrete", **cfg), (1, 8, 8), 10, levels=17)


def test_metric_flow_has_a_uniform_source_over_the_levels():
    flow = _flow(path="metric", metric_distance="square", metric_beta=3.0)
    assert isinstance(flow.path, MetricDiscreteProbPath)
    assert flow.vocab == 17 and flow.mask is None  # no mask token, even with the default --source
    torch.testing.assert_close(flow.path.distance, intensity_distance(17, "square"))
    beta, _ = flow.path.schedule(torch.tensor([0.5], dtype=torch.float64))
    assert float(beta) == pytest.approx(3.0)
    assert isinstance(_flow().path, MixtureDiscreteProbPath) and _flow().vocab == 18


@pytest.mark.parametrize("loss", ["gkl", "ce"])
def test_metric_loss_is_finite_and_trains_the_network(loss):
    flow = _flow(path="metric", discrete_loss=loss)
    model = build_model("tiny", channels=1, image_size=(8, 8), num_classes=10, vocab=flow.vocab)
    g = torch.Generator().manual_seed(0)
    x_1 = torch.randint(0, 17, (16, 1, 8, 8), generator=g)
    value = flow.loss(model, x_1, torch.arange(16) % 10, StepSlice(16, 0, 16), g)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    assert sum(float(gr.abs().sum()) for gr in grads) > 0


def test_metric_run_trains_keeps_its_config_and_samples_levels(tmp_path, tiny_config):
    out = tmp_path / "m"
    train(tiny_config(out, flow="discrete", path="metric", model="unet-tiny", steps=2))
    run = load_run(out)
    assert run.cfg.path == "metric" and isinstance(run.flow.path, MetricDiscreteProbPath)
    images, nfe = run.flow.sample(run.model, torch.tensor([0, 5, -1]), nfe=4, cfg_scale=1.0,
                                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert images.shape == (3, 1, 8, 8) and nfe == 8  # guidance: two calls per step
    levels = torch.round(torch.arange(17) * 255 / 16).to(torch.uint8)
    assert torch.isin(images, levels).all()


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--path", "metric"], "--path metric applies to --flow discrete only"),
        (["--flow", "discrete", "--path", "metric", "--metric-beta", "0"], "--metric-beta must"),
        (["--flow", "discrete", "--path", "metric", "--metric-power", "0.5"], "--metric-power"),
        (["--flow", "discrete", "--path", "metric", "--time-sampler", "skewed"], "uniform or"),
        (["--flow", "discrete", "--metric-beta", "3"], "--metric-beta applies to --path metric"),
        (["--discrete-loss", "ce"], "--discrete-loss applies to --flow discrete only"),
        (
            ["--reflow-pairs", "10", "--reflow-loss", "meanflow"],
            "--reflow-pairs, --reflow-loss apply to --objective reflow only",
        ),
    ],
)
def test_bad_metric_options_are_one_line_errors(tmp_path, capsys, extra, match):
    code = main(["train", "--out", str(tmp_path / "r"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and match in err, err
    assert not (tmp_path / "r").exists()
