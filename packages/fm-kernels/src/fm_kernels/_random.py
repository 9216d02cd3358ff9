"""Seed checks and stream separation for the random kernels."""

from __future__ import annotations

__all__ = ["check_seed", "derived_seed"]

_MASK63 = (1 << 63) - 1


def check_seed(seed: int) -> int:
    """Return ``seed`` if it is an int in ``[0, 2**63)``, else raise naming the argument."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed <= _MASK63:
        raise ValueError(f"seed must lie in [0, 2**63), got {seed}")
    return seed


def derived_seed(seed: int) -> int:
    """A second Philox key for an independent stream (a golden-ratio multiplicative hash)."""
    return (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _MASK63
