import json

import pytest
import torch

from fm_core.training import Checkpointer, RunDirectory, RunError


def _run(path, **kw):
    return RunDirectory(path, app="demo-app", resume_free={"steps", "log_every"}, **kw)


def test_fresh_and_empty_folders_start_fresh(tmp_path):
    assert _run(tmp_path / "new").check_resume({"steps": 3}) is None
    (tmp_path / "empty").mkdir()
    assert _run(tmp_path / "empty").check_resume({"steps": 3}) is None
    assert not (tmp_path / "new").exists()  # checking writes nothing


def test_things_that_are_not_this_apps_run_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="not a directory"):
        _run(tmp_path / "file").check_resume({})
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(RunError, match=r"not an demo-app run \(no config.json"):
        _run(tmp_path / "notes").check_resume({})
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"app": "other-app", "steps": 1}))
    with pytest.raises(RunError, match='expected "app": "demo-app"'):
        _run(other).check_resume({"steps": 1})
    (other / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="not valid JSON"):
        _run(other).read_config()
    with pytest.raises(RunError, match="does not exist"):
        _run(tmp_path / "none").read_config()


def test_untagged_configs_load_only_when_accepted(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"steps": 4}))
    with pytest.raises(RunError, match="not an demo-app run config"):
        _run(tmp_path).read_config()
    assert _run(tmp_path, accept_untagged=True).read_config() == {"steps": 4}


def test_renamed_options_read_back_under_their_new_name(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"app": "demo-app", "warmup": 7}))
    run = _run(tmp_path, renamed={"warmup": "warmup_steps"})
    assert run.read_config() == {"warmup_steps": 7}
    assert run.merge({"warmup_steps": 0}, given=set()) == {"warmup_steps": 7}


def test_resume_may_change_only_the_free_options(tmp_path):
    run = _run(tmp_path)
    run.write_config({"steps": 4, "lr": 0.1, "log_every": 1})
    assert json.loads(run.config_path.read_text())["app"] == "demo-app"
    assert run.check_resume({"steps": 9, "lr": 0.1, "log_every": 5}) is None  # no checkpoint yet
    with pytest.raises(RunError, match=r"different configuration: lr=0.1 \(requested 0.2\)"):
        run.check_resume({"steps": 9, "lr": 0.2})
    run.record_resume({"steps": 9, "lr": 0.2, "log_every": 5})  # only free options are recorded
    assert run.read_config() == {"steps": 9, "lr": 0.1, "log_every": 5}


def test_merge_keeps_saved_values_of_options_not_given(tmp_path):
    run = _run(tmp_path)
    values = {"steps": 9, "lr": 0.5, "seed": 3}
    assert run.merge(values, given=set()) == values  # a fresh folder: the request as is
    run.write_config({"steps": 4, "lr": 0.1})
    assert run.merge(values, given={"steps"}) == {"steps": 9, "lr": 0.1, "seed": 3}
    assert run.merge(values, given={"steps", "lr"}) == values


def test_a_run_at_its_budget_has_nothing_to_train(tmp_path):
    run = _run(tmp_path)
    assert run.finished_message(None, 5) is None
    assert run.finished_message(4, 5) is None
    for start in (5, 7):
        line = run.finished_message(start, 5)
        assert f"already at step {start}" in line and "larger --steps" in line
        assert "\n" not in line


def test_best_and_latest_weights(tmp_path):
    run = _run(tmp_path)
    net = torch.nn.Linear(2, 2)
    with pytest.raises(RunError, match="no checkpoint yet"):
        run.load_weights(net)
    with torch.no_grad():
        net.weight.fill_(1.0)
    run.checkpointer().save(6, model=net)
    assert run.load_weights(net, checkpoint="best") == (6, "latest")  # no best copy: latest
    with torch.no_grad():
        net.weight.fill_(2.0)
    run.best_checkpointer().save(3, model=net)
    with torch.no_grad():
        net.weight.zero_()
    assert run.load_weights(net, checkpoint="best") == (3, "best")
    assert net.weight.eq(2.0).all()
    assert run.load_weights(net, checkpoint="latest") == (6, "latest")
    assert net.weight.eq(1.0).all()
    assert Checkpointer(run.best_path).latest_step() == 3
    with pytest.raises(ValueError, match="best or latest"):
        run.load_weights(net, checkpoint="newest")
