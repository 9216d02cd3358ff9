"""Kernel dispatch shared by every fm-* package: torch, or fm-kernels' fused Triton kernels.

fm-kernels is optional (no package depends on it); it is imported lazily, on the first call that
may use it. DESIGN.md: a kernel runs when fm-kernels is importable, the tensors are on CUDA and
the caller did not ask for ``backend="torch"``; otherwise the torch path runs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch
from torch import Tensor

__all__ = ["BACKENDS", "check_backend", "resolve_backend"]

BACKENDS = ("auto", "torch", "triton")


def check_backend(backend: object) -> str:
    """Raise ``ValueError`` unless ``backend`` is ``"auto"``, ``"torch"`` or ``"triton"``; return it."""
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    return backend  # type: ignore[return-value]


def _import_fm_kernels() -> ModuleType | None:
    try:
        return importlib.import_module("fm_kernels")
    except ImportError:
        return None


def resolve_backend(backend: str, *tensors: Tensor) -> ModuleType | None:
    """Return the ``fm_kernels`` module when a fused kernel should run, else ``None`` (torch).

    - ``"torch"``: never a kernel.
    - ``"auto"``: a kernel when fm-kernels imports and every tensor is on CUDA, in eager mode;
      torch otherwise (also while ``torch.compile`` traces), quietly.
    - ``"triton"``: a kernel, or an error: ``ImportError`` when fm-kernels is missing,
      ``RuntimeError`` for non-CUDA tensors unless Triton's interpreter is on
      (``TRITON_INTERPRET=1`` before importing fm_kernels: how kernels are tested on a CPU).
      An explicitly requested backend never falls back silently.

    The caller then calls the kernel with ``backend="triton"``: once a kernel is chosen, fm-kernels
    runs it or raises, never its torch reference behind the caller's back. For ``"triton"`` the
    rest of the rule (Triton installed; CUDA tensors or the interpreter) is fm-kernels' own
    ``resolve_backend``, so both packages raise the same errors, before any work.
    """
    check_backend(backend)
    if backend == "torch":
        return None
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "auto":
        # While torch.compile traces, inductor fuses the torch path itself, and a hand-launched
        # Triton kernel could break the graph: "auto" keeps a compiled step whole.
        if not on_cuda or torch.compiler.is_compiling():
            return None
        module = _import_fm_kernels()
        return module if module is not None and getattr(module, "HAS_TRITON", True) else None
    module = _import_fm_kernels()
    if module is None:
        raise ImportError(
            "backend='triton' needs the fm-kernels package (Triton kernels): `pip install "
            "fm-kernels` (in the monorepo: `pip install packages/fm-kernels`), or pass "
            "backend='auto' or 'torch'"
        )
    # fm-kernels' own rule: ImportError without Triton, RuntimeError on CPU without the interpreter.
    module._dispatch.resolve_backend("triton", list(tensors), "backend='triton'")
    return module
