"""Seeding and capture/restore of every RNG a training run draws from.

The apps seed per step, with one scheme (:func:`seed_step`): every draw of optimizer step (or
micro-step) ``s`` is a function of ``(seed, s, rank)`` alone, so a resumed run needs only its step
to draw what the uninterrupted run would have drawn, and the draws shared by all processes (the
global batch) do not depend on how many processes there are.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every CUDA device).

    Args:
        seed: a non-negative integer.

    Example:
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); torch.equal(a, torch.rand(2))
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global generator is what we seed
    torch.manual_seed(seed)  # also seeds every CUDA device


#: Streams of :func:`step_seed`: the data order (one permutation per epoch, shared by every
#: process), the draws for the global batch (shared), and ``RANK_STREAM + rank`` for the draws of
#: one process alone (dropout, and anything a process draws for its own share of the batch).
DATA_STREAM, SHARED_STREAM, RANK_STREAM = 1, 2, 3

_MASK64 = 2**64 - 1


def step_seed(seed: int, step: int, stream: int = 0) -> int:
    """A 63-bit seed for ``(seed, step, stream)``: SplitMix64 mixing, so nearby inputs decorrelate.

    Args:
        seed: the run's seed.
        step: the (micro-)step, or an epoch for ``DATA_STREAM``.
        stream: which sequence of draws (see ``DATA_STREAM``, ``SHARED_STREAM``, ``RANK_STREAM``).

    Example:
        >>> step_seed(0, 1, 2) == step_seed(0, 1, 2) != step_seed(0, 2, 2)
        True
    """
    z = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB) & (
        _MASK64
    )
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & (2**63 - 1)


def seed_step(
    seed: int, step: int, *, rank: int = 0, generator: torch.Generator | None = None
) -> None:
    """Seed the draws of one (micro-)step: the apps' one seeding scheme.

    torch's global generators (CPU and CUDA: dropout, and the draws a process makes for its own
    share of the batch, e.g. with ``generator=torch.default_generator``) get
    ``step_seed(seed, step, RANK_STREAM + rank)``; ``generator`` gets
    ``step_seed(seed, step, SHARED_STREAM)``, the same on every process, for draws of the global
    batch that each process then slices.

    Args:
        seed: the run's seed (non-negative).
        step: the (micro-)step about to run.
        rank: this process's rank.
        generator: the generator of the shared draws, reseeded in place (optional).

    Example:
        >>> g = torch.Generator()
        >>> seed_step(0, 5, generator=g); a = (torch.rand(1, generator=g), torch.rand(1))
        >>> seed_step(0, 5, generator=g); b = (torch.rand(1, generator=g), torch.rand(1))
        >>> a == b
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"rank must be a non-negative int, got {rank!r}")
    torch.manual_seed(step_seed(seed, step, RANK_STREAM + rank))
    if generator is not None:
        generator.manual_seed(step_seed(seed, step, SHARED_STREAM))


def capture_rng_state() -> dict[str, Any]:
    """The state of every global RNG, as values ``torch.load(weights_only=True)`` accepts.

    Returns:
        A dict with ``python`` (the tuple of ``random.getstate()``), ``numpy`` (the Mersenne state as a
        tensor plus its position), ``torch`` (the CPU generator's ``ByteTensor``) and ``cuda`` (a list,
        one state per visible device; empty without CUDA).
    """
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    return {
        "python": random.getstate(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured.

    CUDA states are restored only when the number of visible devices matches (a run resumed on
    another machine keeps its freshly seeded CUDA generators).

    Args:
        state: a dict returned by :func:`capture_rng_state`.
    """
    missing = {"python", "numpy", "torch"} - set(state)
    if missing:
        raise ValueError(f"state is missing RNG entries {sorted(missing)}")
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
