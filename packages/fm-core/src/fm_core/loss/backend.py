"""Backend selection for the continuous flow-matching loss: torch, or fm-kernels' fused kernel.

fm-core does not depend on fm-kernels; it is imported lazily, only when a call may use it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from torch import Tensor

__all__ = ["BACKENDS", "resolve_backend"]

BACKENDS = ("auto", "torch", "triton")

_INSTALL_HINT = (
    "backend='triton' needs the fm-kernels package: `pip install fm-kernels` (or, in the monorepo, "
    "`pip install -e packages/fm-kernels`); use backend='auto' or 'torch' to run without it"
)


def _import_fm_kernels() -> ModuleType | None:
    try:
        return importlib.import_module("fm_kernels")
    except ImportError:
        return None


def resolve_backend(backend: str, *tensors: Tensor) -> ModuleType | None:
    """Return the ``fm_kernels`` module when the fused kernel should run, else ``None`` (torch).

    ``"auto"`` uses fm-kernels when it is importable and every tensor is on CUDA; ``"torch"``
    never does; ``"triton"`` always does and raises ``ImportError`` if fm-kernels is missing.
    """
    if backend == "torch":
        return None
    if backend == "triton":
        module = _import_fm_kernels()
        if module is None:
            raise ImportError(_INSTALL_HINT)
        return module
    if not all(x.is_cuda for x in tensors):
        return None
    return _import_fm_kernels()
