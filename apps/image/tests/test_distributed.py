"""Two processes through ``torchrun`` (``python -m torch.distributed.run``) on gloo, then resumed by one process: the same model.

The data order, noise, times and label drops of a step are drawn for the global batch (see
``fm_image.flows``), so the two-process run and a one-process run see the same samples; DDP's
gradient average equals the one-process mean up to float rounding (so: equal losses, and
weights equal to a fraction of one learning-rate step; bitwise equality holds for resumes with
the same number of processes, see test_train.py).
"""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from fm_core.testing import run_torchrun
from fm_core.training import Checkpointer
from fm_image.cli import main

# A constant rate (--decay-steps 0): the run cut at step 4 and its uninterrupted twin share a schedule.
ARGS = ["--batch-size", "32", "--warmup-steps", "0", "--lr", "1e-3", "--decay-steps", "0",
        "--log-every", "2", "--ckpt-every", "2",
        "--no-progress", "--sample-nfe", "2", "--model", "unet-tiny", "--ema-decay", "0.9"]  # fmt: skip


def _final(run, name):
    step = Checkpointer(run).latest_step()
    return load_file(run / "checkpoints" / f"step-{step:08d}" / name)


def test_torchrun_two_processes_then_resume_with_one(tmp_path, capsys):
    ddp = tmp_path / "ddp"
    proc = run_torchrun("-m", "fm_image", "train", "--out", ddp, "--steps", "4", *ARGS)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout  # rank 0 prints the summary, rank 1 nothing
    summary = json.loads(lines[0])
    assert summary["world_size"] == 2 and summary["trained_steps"] == 4
    rows = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]  # rank 0 alone writes
    assert Checkpointer(ddp).steps() == [2, 4]

    assert main(["train", "--out", str(ddp), "--steps", "6"]) == 0  # one process resumes
    assert main(["train", "--out", str(tmp_path / "one"), "--steps", "6", *ARGS]) == 0
    capsys.readouterr()
    # Same samples, noise and times at every step: the logged losses agree to float rounding.
    losses = [
        [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        for run in (ddp, tmp_path / "one")
    ]
    assert len(losses[0]) == 3
    torch.testing.assert_close(torch.tensor(losses[0]), torch.tensor(losses[1]), rtol=1e-5, atol=0)
    # Weights: DDP's (g_0 + g_1) / 2 rounds differently from one mean over 32 samples, and
    # Adam's first steps (~ lr * sign(g)) magnify that on parameters whose gradient is ~0 (the
    # zero-initialised output convolutions), by up to ~3e-5 here. A different batch or noise
    # moves every parameter by ~lr = 1e-3.
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = _final(ddp, name), _final(tmp_path / "one", name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=2e-4, msg=key)
