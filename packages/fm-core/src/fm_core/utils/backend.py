"""Kernel dispatch for every fm-* package: torch, or fm-kernels' fused Triton kernels.

fm-kernels is optional (no package depends on it) and is imported lazily, on the first call that
may use it. The rule itself is fm-kernels' public ``fm_kernels.select_backend``; this wrapper adds
what only a caller knows (DESIGN.md): ``"auto"`` uses a kernel only on CUDA tensors, and
fm-kernels may be missing. Siblings import it from ``fm_core.ext``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from torch import Tensor

from fm_core.utils.checks import link_fm_kernels

__all__ = ["BACKENDS", "check_backend", "resolve_backend"]

BACKENDS = ("auto", "torch", "triton")

_INSTALL_HINT = (
    "backend='triton' needs the fm-kernels package (Triton kernels): `pip install fm-kernels` "
    "(in the monorepo: `pip install packages/fm-kernels`), or pass backend='auto' or 'torch'"
)


def check_backend(backend: object) -> str:
    """Raise ``ValueError`` unless ``backend`` is ``"auto"``, ``"torch"`` or ``"triton"``; return it."""
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    return backend  # type: ignore[return-value]


def _import_fm_kernels() -> ModuleType | None:
    try:
        module = importlib.import_module("fm_kernels")
    except ImportError:
        return None
    # fm-core's one value-check switch governs the kernels' checks too (fm-kernels, a leaf,
    # never looks for fm-core itself). Linking twice is harmless.
    link_fm_kernels(module)
    return module


def resolve_backend(backend: str, *tensors: Tensor) -> ModuleType | None:
    """Return the ``fm_kernels`` module when a fused kernel should run, else ``None`` (torch).

    - ``"torch"``: never a kernel.
    - ``"auto"``: a kernel when every tensor is on CUDA, fm-kernels imports and
      ``fm_kernels.select_backend`` picks Triton (Triton installed, not while ``torch.compile``
      traces); torch otherwise, quietly.
    - ``"triton"``: a kernel, or an error before any work: ``ImportError`` when fm-kernels is
      missing, then ``fm_kernels.select_backend``'s own errors (no Triton; tensors off CUDA
      unless Triton's interpreter is on, which is how kernels are tested on a CPU).

    The caller then calls the kernel with ``backend="triton"``: once a kernel is chosen, fm-kernels
    runs it or raises, never its torch reference behind the caller's back.
    """
    check_backend(backend)
    if backend == "torch" or (backend == "auto" and not all(t.is_cuda for t in tensors)):
        return None
    module = _import_fm_kernels()
    if module is None:
        if backend == "auto":
            return None
        raise ImportError(_INSTALL_HINT)
    chosen = module.select_backend(backend, *tensors, name="backend='triton'")
    return module if chosen == "triton" else None
