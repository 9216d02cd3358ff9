import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fm_core.training import (
    EMA,
    Checkpointer,
    CheckpointError,
    load_weights,
    warmup_cosine_schedule,
)


def _setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4))
    ema = EMA(model, decay=0.9)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = warmup_cosine_schedule(opt, warmup_steps=2, total_steps=20)
    return model, ema, opt, sched


def _train(model, ema, opt, sched, steps):
    for _ in range(steps):
        x = torch.randn(16, 4)  # drawn from the global RNG: resume must restore it
        loss = (model(x) - x.flip(-1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema.update(model)


def test_interrupted_and_resumed_training_equals_uninterrupted(tmp_path):
    ref = _setup()
    _train(*ref, 10)

    first = _setup()
    _train(*first, 4)
    Checkpointer(tmp_path).save(
        4, model=first[0], ema=first[1], optimizer=first[2], scheduler=first[3]
    )
    torch.manual_seed(999)  # a new process starts with other RNG states
    resumed = _setup(seed=5)
    state = Checkpointer(tmp_path).load(
        model=resumed[0], ema=resumed[1], optimizer=resumed[2], scheduler=resumed[3]
    )
    assert state.step == 4
    _train(*resumed, 6)
    for a, b in zip(ref[0].state_dict().values(), resumed[0].state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(ref[1].state_dict().values(), resumed[1].state_dict().values()):
        assert torch.equal(a, b)


def test_keep_prunes_old_checkpoints_and_latest_points_to_newest(tmp_path):
    model = torch.nn.Linear(2, 2)
    ckpt = Checkpointer(tmp_path, keep=2)
    for step in (1, 2, 3):
        ckpt.save(step, model=model, extra={"tag": f"s{step}"})
    assert ckpt.steps() == [2, 3]
    assert ckpt.latest_step() == 3
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-00000003"
    assert ckpt.load(model=model, step=2).extra == {"tag": "s2"}


def test_leftover_temp_dir_and_stale_latest_are_ignored(tmp_path):
    model = torch.nn.Linear(2, 2)
    ckpt = Checkpointer(tmp_path)
    ckpt.save(5, model=model)
    (tmp_path / "checkpoints" / ".tmp-step-00000006-123").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step-00000006\n")
    assert ckpt.latest_step() == 5
    assert ckpt.load(model=model).step == 5
    ckpt.save(7, model=model)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_corrupt_weights_raise_and_leave_the_model_untouched(tmp_path):
    model = torch.nn.Linear(3, 3)
    ckpt = Checkpointer(tmp_path)
    path = ckpt.save(1, model=model)
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    target = torch.nn.Linear(3, 3)
    before = [p.clone() for p in target.parameters()]
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        ckpt.load(model=target)
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))


def test_shape_mismatch_is_named(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(1, model=torch.nn.Linear(3, 3))
    with pytest.raises(CheckpointError, match=r"has shape \[3\].*expects \[4\]"):
        ckpt.load(model=torch.nn.Linear(3, 4))


def test_missing_checkpoint_and_missing_optimizer_state(tmp_path):
    model = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Checkpointer(tmp_path).load(model=model)
    Checkpointer(tmp_path).save(1, model=model)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        Checkpointer(tmp_path).load(
            model=model, optimizer=torch.optim.SGD(model.parameters(), lr=1)
        )


def test_load_weights_prefers_ema(tmp_path):
    model, ema, _, _ = _setup()
    ema.update(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    Checkpointer(tmp_path).save(3, model=model, ema=ema)
    fresh = _setup(seed=1)[0]
    assert load_weights(tmp_path, fresh) == 3
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), ema.module.parameters()))
    load_weights(tmp_path, fresh, ema=False)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters()))


KILLED_DURING_SAVE = textwrap.dedent(
    """
    import os, sys, torch
    from fm_core.training import Checkpointer
    model = torch.nn.Linear(8, 8)
    ckpt = Checkpointer(sys.argv[1])
    ckpt.save(1, model=model)
    real_save = torch.save
    def dying_save(obj, f, *a, **k):
        with open(f, "wb") as handle:
            handle.write(b"PK partial")
        os._exit(9)  # killed in the middle of writing step 2
    torch.save = dying_save
    ckpt.save(2, model=model)
    """
)


def test_a_run_killed_while_writing_a_checkpoint_stays_loadable(tmp_path):
    script = tmp_path / "die.py"
    script.write_text(KILLED_DURING_SAVE)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], timeout=120)
    assert result.returncode == 9
    ckpt = Checkpointer(tmp_path / "run")
    assert ckpt.latest_step() == 1
    assert ckpt.load(model=torch.nn.Linear(8, 8)).step == 1
    assert any(p.name.startswith(".tmp-") for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert os.path.isfile(tmp_path / "run" / "checkpoints" / "step-00000001" / "state.pt")
