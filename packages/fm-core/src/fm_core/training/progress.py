"""Progress bars for long work (tqdm), and plain progress lines where there is no terminal."""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

from tqdm import tqdm as _std_tqdm
from tqdm.auto import tqdm


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgress:
    """Progress for a stream that is not a terminal (a log file, a pipe, CI): whole lines only.

    A tqdm bar redraws itself with carriage returns several times a second; in a file each redraw
    stays, thousands per run. Following tqdm's own advice for non-terminals (update rarely), this
    writes one tqdm-formatted line each time about ``1/lines`` of the work is done, and one at
    :meth:`close`. It offers the part of tqdm's interface the apps use: ``update``,
    ``set_postfix``, ``close``, ``n``, ``total`` and use as a context manager.
    """

    def __init__(
        self, total: int, *, initial: int, desc: str | None, unit: str, file: IO[str], lines: int
    ) -> None:
        self.total, self.n, self.desc, self.unit, self.file = total, initial, desc, unit, file
        self._initial = initial
        self._every = max(1, math.ceil(total / max(lines, 1)))
        self._next = (initial // self._every + 1) * self._every
        self._postfix = ""
        self._t0 = time.monotonic()
        self._closed = False
        self._due = False

    def update(self, n: int = 1) -> None:
        # A due line waits for the caller's set_postfix after this update (the apps log right
        # after it), so it shows the figures of its own step; else it goes out at the next update.
        self._flush_due()
        self.n += n
        if self.n >= self._next and self.n < self.total:
            self._due = True
            self._next = (self.n // self._every + 1) * self._every

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())
        self._flush_due()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._due = False
            self._write()

    def _flush_due(self) -> None:
        if self._due:
            self._due = False
            self._write()

    def _write(self) -> None:
        line = _std_tqdm.format_meter(
            self.n, self.total, time.monotonic() - self._t0, prefix=self.desc or "",
            unit=self.unit, postfix=self._postfix or None, initial=self._initial, ascii=True,
        )  # fmt: skip
        self.file.write(line + "\n")
        self.file.flush()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(
    total: int,
    *,
    initial: int = 0,
    enabled: bool = True,
    desc: str | None = None,
    unit: str = "step",
    file: IO[str] | None = None,
    lines: int = 10,
) -> tqdm | LineProgress:
    """A progress bar over ``total`` units, starting at ``initial`` (a resumed run starts part-way).

    Update it with ``bar.update(1)`` and show live figures with ``bar.set_postfix(loss=...)``; pass
    ``enabled=False`` on every rank but the main one. It writes to stderr (or ``file``), so stdout
    stays machine-readable. On a terminal (or in a notebook) it is a live tqdm bar; when the stream
    is not a terminal (a log file, a pipe) it is a :class:`LineProgress`, about ``lines`` plain
    lines and a final one, never a carriage return.

    Args:
        total: number of units of the whole job.
        initial: units already done.
        enabled: show the bar (``False`` makes every call a no-op).
        desc: label in front of the bar.
        unit: what one unit is called.
        file: the stream (default ``sys.stderr``).
        lines: lines written over the whole job when the stream is not a terminal.
    """
    if total < 0 or initial < 0:
        raise ValueError(f"total and initial must be >= 0, got total={total}, initial={initial}")
    if isinstance(lines, bool) or not isinstance(lines, int) or lines < 1:
        raise ValueError(f"lines must be a positive int, got {lines!r}")
    stream = sys.stderr if file is None else file
    notebook = tqdm.__module__.startswith("tqdm.notebook")  # tqdm.auto picked the widget
    if enabled and not notebook and not _is_terminal(stream):
        return LineProgress(total, initial=initial, desc=desc, unit=unit, file=stream, lines=lines)
    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        desc=desc,
        unit=unit,
        file=stream,
        dynamic_ncols=True,
        mininterval=0.5,
        smoothing=0.05,
    )
