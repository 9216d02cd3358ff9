"""fm-image finetune and inpaint: outputs, the new run opens like any run, bad input -> exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fm_image.cli import main
from fm_image.inpaint import MASKS, make_masks
from fm_image.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from fm_image.config import TrainConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("adapt") / "run"
    train(TrainConfig(out=str(out), steps=4, batch_size=32, warmup_steps=0, log_every=2,
                      ckpt_every=4, progress=False, sample_nfe=2, conditional=False))  # fmt: skip
    return out


def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_finetune_writes_a_run_that_samples(run_dir, tmp_path, capsys):
    out = tmp_path / "tuned"
    argv = ["finetune", "--run", str(run_dir), "--reward", "class:3", "--scale", "2",
            "--out", str(out), "--iters", "2", "--batch-size", "8", "--sde-steps", "4",
            "--num-times", "2", "--classifier-steps", "20"]  # fmt: skip
    assert main(argv) == 0
    info = _last_json(capsys)
    assert info["iters"] == 2 and set(info["end"]) >= {"reward", "class_fraction", "loss"}
    assert (out / "samples.png").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["finetune"]["reward"] == "class:3" and cfg["finetune"]["scale"] == 2.0
    # the fine-tuned weights moved; the new run samples through the ordinary command
    from fm_image.run import load_run

    base, tuned = load_run(run_dir), load_run(out)
    moved = [not torch.equal(a, b) for a, b in
             zip(base.model.parameters(), tuned.model.parameters(), strict=True)]  # fmt: skip
    assert any(moved)
    assert main(["sample", "--run", str(out), "--num", "4", "--out", str(tmp_path / "s.png"),
                 "--nfe", "2"]) == 0  # fmt: skip
    # the output folder now holds a run: a second finetune into it is refused, nothing written
    before = (out / "config.json").read_text()
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "config.json").read_text() == before


@pytest.mark.parametrize(
    ("extra", "match"),
    [(["--reward", "digit:3"], "class:K"), (["--reward", "class:10"], "not a class"),
     (["--scale", "0"], "--scale"), (["--iters", "0"], "--iters")],
)  # fmt: skip
def test_finetune_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys, extra, match):
    argv = ["finetune", "--run", str(run_dir), "--reward", "class:1", "--scale", "1",
            "--out", str(tmp_path / "x"), "--classifier-steps", "20"]  # fmt: skip
    for i in range(0, len(extra), 2):
        if extra[i] in argv:
            argv[argv.index(extra[i]) + 1] = extra[i + 1]
        else:
            argv += extra[i : i + 2]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err
    assert not (tmp_path / "x").exists()


def test_inpaint_writes_three_columns_and_npz(run_dir, tmp_path, capsys):
    out = tmp_path / "inp.png"
    argv = ["inpaint", "--run", str(run_dir), "--mask", "left", "--num", "5", "--out", str(out),
            "--nfe", "4"]  # fmt: skip
    assert main(argv) == 0
    info = _last_json(capsys)
    assert info["hidden_fraction"] == 0.5 and info["nfe"] == 4
    # the defaults chosen by measurement (RESULTS.md, issue 18)
    assert (info["guidance_scale"], info["temperature"], info["start_time"]) == (3.0, 0.3, 0.2)
    assert np.isfinite(info["observed_rmse"])
    data = np.load(tmp_path / "inp.npz")
    assert data["images"].shape == (5, 8, 8, 1) and data["images"].dtype == np.uint8
    assert data["originals"].shape == (5, 8, 8, 1) and data["labels"].dtype == np.int64
    png = np.asarray(Image.open(out))
    zoom = 4
    assert png.shape == (8 * zoom + 2, 15 * (8 * zoom + 1) + 1)  # five triplets in a row
    # column 1 (masked): the hidden left half is grey, the right half the original's pixels
    tile = png[1 : 1 + 8 * zoom, 2 + 8 * zoom : 2 + 16 * zoom][::zoom, ::zoom]
    assert (tile[:, :4] == 128).all()
    assert (tile[:, 4:] == data["originals"][0, :, 4:, 0]).all()


def test_masks_hide_about_half():
    g = torch.Generator().manual_seed(0)
    for name in MASKS:
        m = make_masks(name, 64, (1, 8, 8), g)
        assert m.shape == (64, 1, 8, 8) and set(m.unique().tolist()) <= {0.0, 1.0}
        assert 0.4 < 1 - float(m.mean()) < 0.6, name
    with pytest.raises(ValueError, match="--mask"):
        make_masks("diagonal", 1, (1, 8, 8), g)


def test_inpaint_bad_input(run_dir, tmp_path, capsys):
    base = ["inpaint", "--run", str(run_dir), "--mask", "top"]
    assert main([*base, "--num", "0", "--out", str(tmp_path / "a.png")]) == 2
    assert "--num" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.jpg")]) == 2
    assert ".png" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.png"), "--noise-std", "0"]) == 2
    assert "--noise-std" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.png"), "--temperature", "-1"]) == 2
    assert "--temperature" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "a.png"), "--start-time", "1"]) == 2
    assert "--start-time" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
