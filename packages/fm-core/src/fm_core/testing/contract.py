"""Helpers for the tests every package shares: the compile contract and torchrun runs.

Example:
    >>> compiled = compile_fullgraph(lambda x: 2 * x)
    >>> compiled(torch.ones(2))
    tensor([2., 2.])
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch

__all__ = ["compile_fullgraph", "fresh_dynamo", "run_torchrun"]


def compile_fullgraph(fn: Callable) -> Callable:
    """``torch.compile(fn, fullgraph=True, backend="aot_eager")``: any graph break raises.

    ``aot_eager`` traces forward and backward (AOTAutograd) without generating code, so the
    contract is checked in seconds on a CPU.
    """
    return torch.compile(fn, fullgraph=True, backend="aot_eager")


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Reset dynamo before each test of a module that imports this fixture (one code object is
    compiled per case, which keeps every test under the recompile limit)."""
    torch._dynamo.reset()
    yield


def run_torchrun(
    *args: str, nproc: int = 2, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m torch.distributed.run --standalone --nproc-per-node N *args`` and assert
    that it succeeded (the message holds the tail of its stderr).

    One OpenMP thread per process (``OMP_NUM_THREADS=1``): N processes share the machine's cores.
    Returns the completed process (``stdout``, ``stderr`` as text).
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", str(nproc), *map(str, args)]  # fmt: skip
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
