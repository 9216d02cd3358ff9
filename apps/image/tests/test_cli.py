"""The command line: help with defaults, sample/evaluate outputs, and every bad input -> one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fm_image.cli import main
from fm_image.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch

    from fm_image.config import TrainConfig

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cli") / "run"
    train(TrainConfig(out=str(out), steps=4, batch_size=32, warmup_steps=0, log_every=2,
                      ckpt_every=4, progress=False, sample_nfe=2))  # fmt: skip
    return out


def _snapshot(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_help_shows_defaults_for_every_command(capsys):
    for cmd in ("train", "sample", "evaluate", "demo"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "(default:" in text
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert (
        "--batch-size BATCH_SIZE" in (text := capsys.readouterr().out) and "(default: 256)" in text
    )


def test_sample_writes_png_and_matching_npz(run_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert (
        main(["sample", "--run", str(run_dir), "--num", "20", "--out", str(out), "--nfe", "4"]) == 0
    )
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["nfe"] == 4
    data = np.load(tmp_path / "grid.npz")
    images, labels = data["images"], data["labels"]
    assert images.shape == (20, 8, 8, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [i // 2 for i in range(20)]
    png = np.asarray(Image.open(out))
    zoom, cols = 4, 2  # 20 samples over 10 classes: 2 per row
    for k in range(20):
        r, c = divmod(k, cols)
        tile = png[1 + r * (8 * zoom + 1) :, 1 + c * (8 * zoom + 1) :][: 8 * zoom, : 8 * zoom]
        np.testing.assert_array_equal(tile[::zoom, ::zoom], images[k, :, :, 0])
        np.testing.assert_array_equal(tile, images[k, :, :, 0].repeat(zoom, 0).repeat(zoom, 1))


def test_sample_labels_cfg_and_seed(run_dir, tmp_path, capsys):
    args = ["sample", "--run", str(run_dir), "--num", "6", "--labels", "3,-1", "--cfg-scale", "1.5",
            "--method", "euler", "--nfe", "3"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a.png")]) == 0
    assert main([*args, "--out", str(tmp_path / "b.png")]) == 0
    assert main([*args, "--out", str(tmp_path / "c.png"), "--seed", "1"]) == 0
    a, b, c = (np.load(tmp_path / f"{n}.npz") for n in "abc")
    assert a["labels"].tolist() == [3, -1, 3, -1, 3, -1]
    assert np.array_equal(a["images"], b["images"]) and not np.array_equal(a["images"], c["images"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["nfe"] == 3


def test_evaluate_seeds_summarises_the_single_seed_runs(run_dir, capsys):
    common = ["--run", str(run_dir), "--num", "30", "--nfe", "2", "--classifier-steps", "60"]
    single = []
    for seed in (3, 4):
        assert main(["evaluate", *common, "--seed", str(seed)]) == 0
        single.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert main(["evaluate", *common, "--seed", "3", "--seeds", "2"]) == 0
    both = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert both["seeds"] == [3, 4]
    for key in ("fd", "fd_real", "class_accuracy"):
        assert [row[key] for row in both["per_seed"]] == [r[key] for r in single]
        assert both[key] == pytest.approx((single[0][key] + single[1][key]) / 2)
    assert single[0]["fd"] != single[1]["fd"]
    assert both["fd_sd"] == pytest.approx(abs(single[0]["fd"] - single[1]["fd"]) / 2**0.5)
    ratio = (single[0]["fd"] / single[0]["fd_real"] + single[1]["fd"] / single[1]["fd_real"]) / 2
    assert both["fd_ratio"] == pytest.approx(ratio)
    assert "per_seed" not in single[0]


def test_evaluate_prints_json_last(run_dir, capsys):
    assert main(["evaluate", "--run", str(run_dir), "--num", "50", "--nfe", "2",
                 "--classifier-steps", "60"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert {
        "fd",
        "fd_real",
        "class_accuracy",
        "nfe",
        "seconds_per_sample",
        "classifier_accuracy",
    } <= result.keys()
    assert result["fd"] > 0 and result["fd_real"] > 0 and 0 <= result["class_accuracy"] <= 1
    assert "classifier held-out accuracy" in lines[0]
    assert (run_dir / "classifier" / "model.safetensors").is_file()


def _bad(argv, capsys, match):
    code = main(argv) if argv[0] != "--" else None
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert match in err, err


BAD_TRAIN = [
    (["--steps", "0"], "--steps must be >= 1"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--batch-size", "10", "--grad-accum", "3"], "divisible by --grad-accum"),
    (["--data", "mnist"], "needs --data-dir"),
    (["--flow", "discrete", "--scheduler", "vp"], "convex --scheduler"),
]


@pytest.mark.parametrize(("extra", "match"), BAD_TRAIN)
def test_bad_train_options(tmp_path, capsys, extra, match):
    _bad(["train", "--out", str(tmp_path / "r"), *extra], capsys, match)
    assert not (tmp_path / "r").exists()


def test_argparse_errors_are_one_line_exit_2(capsys):
    for argv in (
        ["train"],
        ["train", "--out", "x", "--bogus"],
        ["frobnicate"],
        ["train", "--out", "x", "--steps", "many"],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("fm-image"), err


def test_missing_and_corrupt_data_folders(tmp_path, capsys):
    _bad(["train", "--out", str(tmp_path / "r"), "--data", "cifar10", "--data-dir", str(tmp_path / "none")],
         capsys, "does not exist")  # fmt: skip
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "train-images-idx3-ubyte").write_bytes(b"junk")
    _bad(["train", "--out", str(tmp_path / "r"), "--data", "mnist", "--data-dir", str(tmp_path / "idx")],
         capsys, "not a uint8 IDX file")  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_bad_run_dirs_overwrite_nothing(run_dir, tmp_path, capsys):
    before = _snapshot(run_dir)
    _bad(
        ["train", "--out", str(run_dir), "--steps", "8", "--lr", "0.01"],
        capsys,
        "different configuration",
    )
    assert main(["train", "--out", str(run_dir), "--steps", "2"]) == 0  # a no-op, said in one line
    assert "already at step 4" in capsys.readouterr().err
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "config.json").write_text(json.dumps({"app": "something-else"}))
    _bad(["train", "--out", str(stranger)], capsys, "not an fm-image run config")
    _bad(
        ["sample", "--run", str(stranger), "--out", str(tmp_path / "s.png")],
        capsys,
        "not an fm-image run",
    )
    _bad(
        ["sample", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "s.png")],
        capsys,
        "does not exist",
    )
    _bad(["evaluate", "--run", str(tmp_path)], capsys, "no config.json")
    _bad(
        ["sample", "--run", str(run_dir), "--out", str(tmp_path / "s.jpg")],
        capsys,
        "must name a .png",
    )
    _bad(["sample", "--run", str(run_dir), "--out", str(tmp_path / "s.png"), "--labels", "12"], capsys,
         "not a class of this run")  # fmt: skip
    _bad(["sample", "--run", str(run_dir), "--out", str(tmp_path / "s.png"), "--method", "nope"], capsys,
         "method must be one of")  # fmt: skip
    _bad(["evaluate", "--run", str(run_dir), "--num", "400"], capsys, "--num must lie in [2, 225]")
    _bad(["evaluate", "--run", str(run_dir), "--seeds", "0"], capsys, "--seeds must be >= 1")
    _bad(["evaluate", "--run", str(run_dir), "--inception-weights", str(tmp_path / "no.pth")], capsys,
         "does not exist")  # fmt: skip
    assert _snapshot(run_dir) == before
    assert not (tmp_path / "s.png").exists()


def test_demo_runs_end_to_end_and_ends_with_json(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--steps", "3", "--no-progress", "--classifier-steps", "30"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["trained_steps"] == 3 and {"fd", "fd_real", "class_accuracy"} <= result.keys()
    for picture in result["pictures"]:
        assert Image.open(picture).size[0] > 50
        assert any(picture in line for line in lines[:-1])  # the paths are printed before the JSON
    assert json.loads((out / "config.json").read_text())["decay_steps"] == 3


def test_resume_from_the_command_line_needs_only_steps(tmp_path, capsys):
    out = str(tmp_path / "r")
    base = ["train", "--out", out, "--batch-size", "16", "--lr", "3e-3", "--no-progress",
            "--sample-nfe", "2", "--log-every", "1"]  # fmt: skip
    assert main([*base, "--steps", "2"]) == 0
    assert main(["train", "--out", out, "--steps", "3", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["trained_steps"] == 1 and summary["step"] == 3


def test_console_script_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fm_image", "sample", "--run", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
