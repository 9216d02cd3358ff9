"""Every bad input: one line on stderr, exit code 2, nothing in an existing run changed."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fm_text.cli import main


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _fails(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fm-text"), err
    assert match in err, err


def test_bad_inputs_touch_nothing(capsys, tmp_path, flow_run, ar_run, corpus):
    before = _snapshot(flow_run), _snapshot(ar_run)
    run, ar = str(flow_run), str(ar_run)
    empty = tmp_path / "empty"
    empty.mkdir()
    unreadable = tmp_path / "bin.txt"
    unreadable.write_bytes(b"\xff\xfe\x00")
    cases = [
        (["train", "--out", run, "--bogus", "1"], "unrecognized arguments"),
        (["sample", "--run", run, "--num", "1", "--frobnicate"], "unrecognized arguments"),
        (["nope"], "invalid choice"),
        (["train", "--out", str(tmp_path / "n"), "--data", str(empty)], str(empty)),
        (["train", "--out", str(tmp_path / "n"), "--data", str(unreadable)], str(unreadable)),
        (["train", "--out", str(tmp_path / "n"), "--data", str(tmp_path / "no")], "no"),
        (["train", "--out", run, "--steps", "9", "--model", "ar"], "model"),
        (["train", "--out", run, "--steps", "9", "--context", "8"], "context"),
        (["train", "--out", str(tmp_path / "n"), "--steps", "0"], "steps"),
        (["train", "--out", str(tmp_path / "n"), "--lr", "-1"], "lr"),
        (["train", "--out", str(corpus), "--data", str(corpus)], "not an fm-text run"),
        (["sample", "--run", run, "--num", "1", "--prompt", "word " * 40], "--length"),
        (["sample", "--run", run, "--num", "1", "--length", "99"], "length"),
        (["sample", "--run", run, "--num", "0"], "num"),
        (["sample", "--run", run, "--num", "1", "--temperature", "0"], "temperature"),
        (["sample", "--run", ar, "--num", "1", "--suffix", "x"], "suffix"),
        (["sample", "--run", str(tmp_path / "none"), "--num", "1"], "not an fm-text run"),
        (["evaluate", "--run", str(tmp_path / "none")], "not an fm-text run"),
        (["evaluate", "--run", run, "--judge", run], "judge"),
        (["evaluate", "--run", run, "--num", "0"], "--num must be a positive int"),
        (["evaluate", "--run", run, "--num-samples", "0"], "--num must be"),  # old spelling
        (["train", "--out", run, "--st", "9"], "unrecognized arguments: --st"),  # no abbreviations
        (["demo", "--out", str(unreadable)], "not a folder"),
        (["demo", "--steps", "0"], "steps"),
        (["demo", "--data", str(tmp_path / "no-such-corpus")], "data"),
    ]
    for argv, match in cases:
        _fails(capsys, argv, match)
    assert not (tmp_path / "n").exists()
    assert (_snapshot(flow_run), _snapshot(ar_run)) == before
    existing = tmp_path / "s.jsonl"
    existing.write_text("keep\n")
    _fails(capsys, ["sample", "--run", run, "--num", "1", "--out", str(existing)], "exists")
    assert existing.read_text() == "keep\n"


def test_a_run_at_its_budget_is_a_no_op_that_says_so(capsys, flow_run):
    before = _snapshot(flow_run)
    for steps in ("4", "3"):
        assert main(["train", "--out", str(flow_run), "--steps", steps]) == 0
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and "already at step 4" in captured.err
        assert json.loads(captured.out)["trained_steps"] == 0
    assert _snapshot(flow_run) == before


def test_a_run_written_before_the_app_tag_and_the_rename_still_resumes(capsys, tmp_path, flow_run):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(flow_run, old)
    config = json.loads((old / "config.json").read_text())
    del config["app"]
    config["warmup"] = config.pop("warmup_steps")
    (old / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(old), "--steps", "4"]) == 0  # read, checked, nothing to do
    assert "already at step 4" in capsys.readouterr().err
    assert main(["train", "--out", str(old), "--steps", "4", "--warmup-steps", "7"]) == 2
    assert "warmup_steps=" in capsys.readouterr().err  # compared under its new name


def test_sample_prints_and_writes_jsonl(capsys, tmp_path, flow_run):
    out = tmp_path / "s.jsonl"
    argv = ["sample", "--run", str(flow_run), "--num", "3", "--nfe", "4", "--prompt", "The "]
    assert main([*argv, "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["text"].startswith("The ") for r in rows)
    printed = capsys.readouterr().out
    assert printed.strip().split("\n\n")[0] == rows[0]["text"].strip() or rows[0]["text"] in printed


def test_evaluate_prints_one_json_line_last(capsys, flow_run, ar_run):
    argv = ["evaluate", "--run", str(flow_run), "--judge", str(ar_run), "--num", "2"]
    assert main([*argv, "--nfe", "4", "--time-samples", "2", "--max-sequences", "6"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("ppl_bound", "bits_per_byte", "tokens", "seconds", "sample_entropy", "val_entropy"):
        assert result[key] > 0, key
    assert result["tokens"] == 6 * 16 and result["gen_ppl"] > 1
    assert result["ppl_left"] > 1 and 0 < result["calls_per_token"] <= 1
    assert main(["evaluate", "--run", str(ar_run), "--num", "2", "--max-sequences", "6"]) == 0
    ar = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ar["model"] == "ar" and ar["ppl_bound"] > 1 and "ppl_left" not in ar


def test_real_process_exit_code_and_help(capsys):
    bad = subprocess.run(
        [sys.executable, "-m", "fm_text.cli", "train", "--bogus"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    for command in ("train", "sample", "evaluate", "demo"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert "(default:" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    helped = capsys.readouterr().out
    assert "(default: pydoc)" in helped and "(default: 0.002)" in helped
