"""The one progress hook of the solvers: a tqdm bar over steps when asked and tqdm is installed.

tqdm is optional for the libraries (it comes with ``fm-core[train]``); without it, or when not
asked, there is no bar (``None``: nothing in the step loop, so compiled solves see no hook).
Written to a file or pipe rather than a terminal, the bar updates every 30 s at most, so a log
holds a handful of lines rather than a carriage return per step.
"""

from __future__ import annotations

import sys

__all__ = ["step_progress"]


def step_progress(total: int, *, enabled: bool = True, desc: str = "solve"):
    """A tqdm bar over ``total`` steps (call ``update()``, then ``close()``), or ``None``."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are optional
        return None
    interval = 0.5 if sys.stderr.isatty() else 30.0
    return tqdm(total=total, desc=desc, unit="step", mininterval=interval)
