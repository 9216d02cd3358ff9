"""Progress bars for long work (tqdm)."""

from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(
    total: int,
    *,
    initial: int = 0,
    enabled: bool = True,
    desc: str | None = None,
    unit: str = "step",
) -> tqdm:
    """A tqdm bar over ``total`` units, starting at ``initial`` (a resumed run starts part-way).

    Update it with ``bar.update(1)`` and show live figures with ``bar.set_postfix(loss=...)``; pass
    ``enabled=False`` on every rank but the main one. The bar writes to stderr, so stdout stays
    machine-readable.

    Args:
        total: number of units of the whole job.
        initial: units already done.
        enabled: show the bar (``False`` makes every call a no-op).
        desc: label in front of the bar.
        unit: what one unit is called.
    """
    if total < 0 or initial < 0:
        raise ValueError(f"total and initial must be >= 0, got total={total}, initial={initial}")
    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        desc=desc,
        unit=unit,
        dynamic_ncols=True,
        mininterval=0.5,
        smoothing=0.05,
    )
