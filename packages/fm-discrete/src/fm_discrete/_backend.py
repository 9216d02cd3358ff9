"""Kernel dispatch: use ``fm_kernels`` when asked for, or when it is importable and tensors are on CUDA.

fm-discrete does not depend on fm-kernels; the import is lazy and happens on first use.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from torch import Tensor

__all__ = ["BACKENDS", "check_backend", "resolve_backend"]

BACKENDS = ("auto", "torch", "triton")


def check_backend(backend: object) -> str:
    """Raise ``ValueError`` unless ``backend`` is one of ``"auto"``, ``"torch"``, ``"triton"``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend  # type: ignore[return-value]


def _import_kernels() -> ModuleType | None:
    try:
        return importlib.import_module("fm_kernels")
    except ImportError:
        return None


def resolve_backend(backend: str, *tensors: Tensor) -> ModuleType | None:
    """Return the ``fm_kernels`` module to use, or ``None`` for the torch implementation.

    ``"torch"`` never uses kernels; ``"auto"`` uses them when ``fm_kernels`` imports and every
    tensor is on CUDA (quietly falling back otherwise); ``"triton"`` requires fm-kernels and
    CUDA tensors, or CPU tensors with Triton's interpreter on (``TRITON_INTERPRET=1``, how the
    kernels are tested without a GPU), and raises otherwise.
    """
    check_backend(backend)
    if backend == "torch":
        return None
    on_cuda = all(t.is_cuda for t in tensors)
    if backend == "auto":
        return _import_kernels() if on_cuda else None
    module = _import_kernels()
    if module is None:
        raise ImportError(
            "backend='triton' needs the fm-kernels package (Triton GPU kernels): install it with "
            "`pip install fm-kernels` (Linux, CUDA, triton), or pass backend='torch'/'auto'"
        )
    if not on_cuda and not getattr(module, "INTERPRETED", False):
        raise ValueError(
            "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before importing "
            "fm_kernels); use backend='auto' or 'torch' on CPU"
        )
    return module
