"""Metric logging: one JSON object per line (and optionally TensorBoard), plus a loss-curve plot."""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from fm_core.training.atomic import atomic_path, write_text_atomic


def _scalar(name: str, value: Any) -> float | int | str:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"metric {name!r} must be a scalar, got a tensor of shape {list(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    raise TypeError(
        f"metric {name!r} must be a number, str or 1-element tensor, got {type(value).__name__}"
    )


class MetricsLogger:
    """Appends ``{"step": ..., **scalars}`` lines to ``RUN_DIR/metrics.jsonl``.

    Each line is flushed as it is written, so a run killed mid-way keeps its history (a partial
    last line is skipped by :func:`read_metrics`). Resuming with ``resume_step`` first drops lines
    logged after that step (work that the resumed run will redo), so the file reads as one run.

    Args:
        run_dir: the run directory.
        enabled: write anything at all (pass ``ctx.is_main`` so only rank 0 writes).
        resume_step: the step a resumed run continues from; ``None`` for a new run.
        tensorboard: also write TensorBoard scalars to ``RUN_DIR/tensorboard`` (needs the
            ``tensorboard`` package).
        filename: the JSONL file's name inside ``run_dir``.

    Example:
        >>> import tempfile
        >>> log = MetricsLogger(tempfile.mkdtemp())
        >>> log.log(1, loss=torch.tensor(0.5), lr=1e-3)
        >>> read_metrics(log.path)
        [{'step': 1, 'loss': 0.5, 'lr': 0.001}]
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        enabled: bool = True,
        resume_step: int | None = None,
        tensorboard: bool = False,
        filename: str = "metrics.jsonl",
    ) -> None:
        self.path = Path(run_dir) / filename
        self.enabled = enabled
        self._tb = None
        self._file = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            kept = [row for row in read_metrics(self.path) if row.get("step", 0) <= resume_step]
            write_text_atomic(self.path, "".join(json.dumps(row) + "\n" for row in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError(
                    "tensorboard=True needs the tensorboard package: pip install tensorboard"
                ) from err
            self._tb = SummaryWriter(
                log_dir=str(Path(run_dir) / "tensorboard"), purge_step=resume_step
            )
        self._file = open(self.path, "a", encoding="utf-8")

    def log(self, step: int, **scalars: Any) -> None:
        """Write one line for ``step``. Tensors are read with ``.item()``: log at intervals, not
        every step, on accelerators (each read waits for the device)."""
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _scalar(k, v) for k, v in scalars.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, global_step=row["step"])

    def close(self) -> None:
        """Close the file (and the TensorBoard writer)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a metrics JSONL file; an unterminated last line (a killed run) is skipped."""
    rows = []
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == text.count("\n"):  # the partial last line of a killed run
                continue
            raise ValueError(f"{path}: line {number + 1} is not JSON: {line[:80]!r}") from None
    return rows


def plot_metrics(
    metrics_jsonl: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    keys: Iterable[str] = ("loss",),
    smooth: Iterable[str] | None = None,
    title: str | None = None,
) -> Path:
    """Plot metrics against step (raw values faint, a running mean on top) into a PNG.

    A panel whose values span more than a factor of 10 gets a logarithmic axis.

    Args:
        metrics_jsonl: a file written by :class:`MetricsLogger`.
        out_png: the picture to write (atomically).
        keys: the metrics to draw, one panel each.
        smooth: the keys that get a running mean (default: all). Leave out metrics measured
            rarely and without noise, such as a validation score: a trailing mean only lags them.
        title: a title for the figure.

    Returns:
        The path of the written PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(keys)
    smooth = set(keys if smooth is None else smooth)
    rows = read_metrics(metrics_jsonl)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        points = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        points = [(s, v) for s, v in points if math.isfinite(v)]
        if points:
            steps, values = zip(*points)
            if key in smooth:
                ax.plot(steps, values, color="tab:blue", alpha=0.3, lw=1, label=key)
                # A centred window (clipped at the ends): a trailing one lags a falling curve.
                half = max(len(values) // 40, 1)
                sums = [0.0, *itertools.accumulate(values)]
                mean = []
                for i in range(len(values)):
                    lo, hi = max(0, i - half), min(len(values), i + half + 1)
                    mean.append((sums[hi] - sums[lo]) / (hi - lo))
                ax.plot(steps, mean, color="tab:blue", lw=2, label=f"{key} (running mean)")
            else:
                ax.plot(steps, values, color="tab:blue", lw=2, marker=".", ms=3, label=key)
            if min(values) > 0 and max(values) / min(values) > 10:
                ax.set_yscale("log")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
