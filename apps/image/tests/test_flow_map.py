"""``--objective meanflow | imf``: a flow-map run trains, samples and evaluates at 1, 2, 4 NFE."""

from __future__ import annotations

import json

import pytest
import torch

from fm_image.cli import main
from fm_image.models import build_model
from fm_image.run import load_run
from fm_image.train import train


@pytest.fixture(scope="module")
def flow_map_run(tmp_path_factory):
    from fm_image.config import TrainConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("fmap") / "run"
    train(TrainConfig(out=str(out), objective="meanflow", steps=3, batch_size=32, warmup_steps=0,
                      log_every=1, ckpt_every=3, progress=False, sample_nfe=1))  # fmt: skip
    return out


def test_flow_map_run_trains_a_finite_loss_and_writes_its_grid(flow_map_run):
    lines = [json.loads(x) for x in (flow_map_run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in lines)
    assert (flow_map_run / "samples.png").is_file()
    run = load_run(flow_map_run)
    assert run.flow.flow_map and run.model.embed.gap is not None


@pytest.mark.parametrize("nfe", [1, 2, 4])
def test_sample_and_evaluate_take_nfe_jumps(flow_map_run, tmp_path, capsys, nfe):
    out = tmp_path / "g.png"
    assert main(["sample", "--run", str(flow_map_run), "--num", "10", "--out", str(out),
                 "--nfe", str(nfe)]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["nfe"] == nfe
    if nfe == 1:
        code = main(["evaluate", "--run", str(flow_map_run), "--num", "20", "--nfe", "1",
                     "--classifier-steps", "5"])  # fmt: skip
        assert code == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["nfe"] == 1 and result["method"] == "flow-map"
        assert result["fd"] > 0


def test_extra_guidance_at_sampling_is_one_batched_call_per_jump(flow_map_run):
    run = load_run(flow_map_run)
    labels = torch.arange(4)
    g = torch.Generator().manual_seed(0)
    plain, _ = run.flow.sample(run.model, labels, nfe=2, generator=g)
    g = torch.Generator().manual_seed(0)
    images, nfe = run.flow.sample(run.model, labels, nfe=2, cfg_scale=0.5, generator=g)
    assert nfe == 2 and images.shape == (4, 1, 8, 8) and images.dtype == torch.uint8
    assert not torch.equal(images, plain)


def test_flow_map_network_needs_r_and_a_plain_one_refuses_it():
    fmap = build_model("tiny", channels=1, image_size=(8, 8), num_classes=10, flow_map=True)
    plain = build_model("tiny", channels=1, image_size=(8, 8), num_classes=10)
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert fmap(x, t, None, r=t).shape == x.shape
    with pytest.raises(ValueError, match="flow_map=True"):
        fmap(x, t)
    with pytest.raises(ValueError, match="flow_map=True"):
        plain(x, t, r=t)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "shortcut"], "invalid choice"),
        (["--objective", "meanflow", "--flow", "discrete"], "needs --flow continuous"),
        (["--objective", "imf", "--mf-equal-fraction", "1.5"], "mf-equal-fraction"),
    ],
)
def test_bad_flow_map_options_are_one_line_exit_2(tmp_path, capsys, args, message):
    code = main(["train", "--out", str(tmp_path / "r"), "--steps", "1", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "r").exists()
