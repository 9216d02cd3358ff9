import json

import torch
from safetensors.torch import load_file

from fm_core.training import read_metrics


def _weights(run, step):
    return load_file(str(run / "checkpoints" / f"step-{step:08d}" / "model.safetensors"))


def test_flow_smoke_run_writes_everything(flow_run):
    for name in ("config.json", "tokenizer.json", "metrics.jsonl", "loss.png"):
        assert (flow_run / name).is_file(), name
    assert (flow_run / "checkpoints" / "step-00000004").is_dir()
    assert (flow_run / "best" / "checkpoints").is_dir()
    rows = read_metrics(flow_run / "metrics.jsonl")
    vals = [r["val_nll"] for r in rows if "val_nll" in r]
    assert len(vals) == 2 and all(v > 0 for v in vals)
    assert json.loads((flow_run / "config.json").read_text())["model"] == "flow"
    assert list((flow_run / "cache").glob("*.bin"))


def test_ar_smoke_run(ar_run):
    rows = read_metrics(ar_run / "metrics.jsonl")
    assert [r["step"] for r in rows if "val_nll" in r] == [2, 4]
    assert all(torch.isfinite(v).all() for v in _weights(ar_run, 4).values())


def test_resume_continues_exactly(tmp_path, train_tiny):
    """3 steps then a resume to 6 equal 6 steps in one go (constant learning rate)."""
    opts = ["--warmup-steps", "0", "--min-lr-ratio", "1.0", "--eval-every", "3", "--log-every", "1"]
    once = train_tiny(tmp_path / "once", *opts, "--steps", "6")
    twice = train_tiny(tmp_path / "twice", *opts, "--steps", "3")
    train_tiny(twice, "--steps", "6")  # the stored options are reused
    a, b = _weights(once, 6), _weights(twice, 6)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    steps = [r["step"] for r in read_metrics(twice / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_early_stopping_keeps_the_best_copy(tmp_path, train_tiny):
    run = train_tiny(
        tmp_path / "r",
        "--model", "ar", "--steps", "30", "--eval-every", "2", "--patience", "1", "--lr", "0.5",
        "--warmup", "0",
    )  # fmt: skip
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "val_nll" in r]
    assert rows[-1]["step"] < 30  # stopped: the huge learning rate makes it diverge
    assert json.loads((run / "summary.json").read_text())["stopped_early"]
    best = min(rows, key=lambda r: r["val_nll"])
    assert (run / "best" / "checkpoints" / f"step-{best['step']:08d}").is_dir()
