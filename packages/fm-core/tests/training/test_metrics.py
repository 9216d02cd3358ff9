import pytest
import torch

from fm_core.training import MetricsLogger, plot_metrics, read_metrics


def test_log_and_read_back(tmp_path):
    with MetricsLogger(tmp_path) as log:
        for step in range(1, 4):
            log.log(step, loss=torch.tensor(1.0 / step), lr=0.1)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[1]["loss"] == pytest.approx(0.5)


def test_resume_drops_lines_after_the_checkpoint_and_partial_lines(tmp_path):
    with MetricsLogger(tmp_path) as log:
        for step in range(1, 6):
            log.log(step, loss=float(step))
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "lo')  # killed mid-write
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    with MetricsLogger(tmp_path, resume_step=3) as log:
        log.log(4, loss=40.0)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_disabled_logger_writes_nothing(tmp_path):
    MetricsLogger(tmp_path / "run", enabled=False).log(1, loss=1.0)
    assert not (tmp_path / "run").exists()


def test_non_scalar_metric_is_named(tmp_path):
    with MetricsLogger(tmp_path) as log, pytest.raises(ValueError, match="'loss'"):
        log.log(1, loss=torch.ones(2))


def test_plot_metrics_writes_a_png(tmp_path):
    with MetricsLogger(tmp_path) as log:
        for step in range(1, 50):
            log.log(step, loss=1.0 / step, lr=1e-3)
    out = plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "loss.png", keys=("loss", "lr"))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".tmp-*"))
