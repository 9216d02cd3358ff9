"""Training runs: outputs, resume equivalence, both flows, and runs killed while saving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fm_core.training import Checkpointer
from fm_image.config import RunError, TrainConfig
from fm_image.run import load_run
from fm_image.train import train


def _weights(run: Path) -> dict[str, torch.Tensor]:
    step = Checkpointer(run).latest_step()
    folder = run / "checkpoints" / f"step-{step:08d}"
    return {**load_file(folder / "model.safetensors"),
            **{"ema." + k: v for k, v in load_file(folder / "ema.safetensors").items()}}  # fmt: skip


def test_continuous_smoke_writes_every_output(tmp_path, tiny_config):
    out = tmp_path / "run"
    summary = train(tiny_config(out))
    assert summary["trained_steps"] == 6
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["app"] == "fm-image" and cfg["data_info"]["shape"] == [1, 8, 8]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert all({"loss", "lr", "images_per_s"} <= r.keys() for r in rows)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert Checkpointer(out).steps() == [3, 6]
    grid = Image.open(out / "samples.png")
    # one row per class: 10 rows of 10 digits at 4x zoom with 1-pixel borders
    assert grid.size == (10 * 33 + 1, 10 * 33 + 1)
    assert Image.open(out / "loss.png").size[0] > 100


def test_training_reduces_the_loss(tmp_path, tiny_config):
    train(tiny_config(tmp_path / "r", steps=60, log_every=10, ckpt_every=60, lr=2e-3))
    rows = [
        json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    ]
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"]


def test_discrete_smoke_samples_valid_levels(tmp_path, tiny_config):
    out = tmp_path / "d"
    train(tiny_config(out, flow="discrete", model="unet-tiny"))
    run = load_run(out)
    assert run.flow.vocab == 18  # 17 intensity levels and the mask
    images, nfe = run.flow.sample(run.model, torch.tensor([0, 5, -1]), nfe=4,
                                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert images.shape == (3, 1, 8, 8) and images.dtype == torch.uint8 and nfe == 4
    levels = torch.round(torch.arange(17) * 255 / 16).to(torch.uint8)
    assert torch.isin(images, levels).all()  # every pixel is one of the 17 levels


def test_discrete_uniform_source_trains(tmp_path, tiny_config):
    summary = train(tiny_config(tmp_path / "u", flow="discrete", source="uniform", steps=2))
    assert summary["trained_steps"] == 2


@pytest.mark.parametrize(
    "extra", [{}, {"grad_accum": 2, "ot_coupling": True, "time_sampler": "logit-normal"}]
)
def test_resume_gives_the_uninterrupted_weights(tmp_path, tiny_config, extra):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(tiny_config(whole, model="unet-tiny", **extra))
    first = train(tiny_config(parts, model="unet-tiny", steps=3, **extra))
    assert first["trained_steps"] == 3
    second = train(tiny_config(parts, model="unet-tiny", **extra))
    assert second["trained_steps"] == 3
    a, b = _weights(whole), _weights(parts)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bitwise on CPU
    steps = [
        json.loads(line)["step"] for line in (parts / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [2, 3, 4, 6]


def test_run_dir_checks_happen_before_any_write(tmp_path, tiny_config):
    out = tmp_path / "run"
    train(tiny_config(out, steps=3))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(RunError, match="different configuration: lr"):
        train(tiny_config(out, steps=6, lr=0.5))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not an fm-image run"):
        train(tiny_config(tmp_path / "other"))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.parametrize("steps", [3, 2])
def test_a_run_at_its_budget_is_a_no_op_that_says_so(tmp_path, tiny_config, capsys, steps):
    out = tmp_path / "run"
    train(tiny_config(out, steps=3))
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    summary = train(tiny_config(out, steps=steps))
    assert summary["trained_steps"] == 0 and summary["step"] == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already at step 3" in err and "larger --steps" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import json
    import fm_core.training.checkpoint as ck
    from fm_image.config import TrainConfig
    from fm_image.train import train

    real = ck.save_model
    calls = []

    def dying_save(model, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 3:  # second checkpoint (step 4), after its model file, mid-write
            real(model, filename, metadata=metadata)
            with open(filename, "r+b") as f:
                f.truncate(100)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(model, filename, metadata=metadata)

    ck.save_model = dying_save
    train(TrainConfig(**json.loads(sys.argv[2])))
    """
)


def test_kill_during_checkpoint_write_leaves_a_loadable_run(tmp_path, tiny_config):
    out = tmp_path / "run"
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(out),
            json.dumps(vars(tiny_config(out, steps=6, ckpt_every=2))),
        ],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert Checkpointer(out).latest_step() == 2  # the half-written step 4 is not visible
    assert any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())
    assert load_run(out).step == 2
    summary = train(tiny_config(out, steps=6, ckpt_every=2))  # resumes from step 2
    assert summary["trained_steps"] == 4
    assert Checkpointer(out).latest_step() == 6
    assert not any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())
    # and the resumed run equals an uninterrupted one
    train(tiny_config(tmp_path / "whole", steps=6, ckpt_every=2))
    a, b = _weights(out), _weights(tmp_path / "whole")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_default_recipe_is_the_demos():
    """``fm-image train`` with defaults trains as the demo does: same steps, rate and schedule."""
    from fm_image.demo import DEMO
    from fm_image.train import lr_schedule

    def rates(cfg):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
        sched = lr_schedule(opt, cfg)
        out = []
        for _ in range(cfg.steps):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return out

    default, demo = TrainConfig(), TrainConfig(**DEMO)
    assert default.steps == demo.steps and default.lr == demo.lr
    a, b = rates(default), rates(demo)
    assert a == b
    assert a[default.warmup_steps] == default.lr and a[-1] < 1e-3 * default.lr  # decays to ~0
    old = TrainConfig(decay_steps=0, steps=300, warmup_steps=10)  # runs written before: constant
    assert set(rates(old)[10:]) == {old.lr}
