"""Backend selection, the optional Triton import, and argument checks shared by every op.

Triton is optional at import time: without it (macOS, Windows, a CPU-only image) ``import
fm_kernels`` still works, every ``backend="auto"`` call runs the torch reference, and
``backend="triton"`` raises an ``ImportError`` that says what to install.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised in a subprocess test
    HAS_TRITON = False

    def _jit(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)

    # Stand-ins so that the kernel definitions (decorators, ``tl.constexpr`` annotations) still
    # evaluate; the kernels themselves are never launched without Triton.
    triton = SimpleNamespace(jit=_jit)
    tl = SimpleNamespace(constexpr=object, float32=None, float64=None)

__all__ = [
    "BACKENDS",
    "HAS_TRITON",
    "INTERPRETED",
    "REDUCTIONS",
    "VALUE_CHECK_MODES",
    "as_batch_vector",
    "check_choice",
    "check_floating",
    "check_integer",
    "check_nonempty",
    "checks_enabled",
    "compute_dtype",
    "get_value_checks",
    "select_backend",
    "set_value_checks",
    "tl",
    "tl_dtype",
    "to_storage",
    "triton",
    "unit_grad_output",
]

BACKENDS = ("auto", "torch", "triton")
#: Every loss here: "mean" and "sum" reduce the unreduced values "none" returns (fm-core's rule).
REDUCTIONS = ("mean", "sum", "none")
VALUE_CHECK_MODES = ("auto", "always", "off")

# triton.jit decides at decoration time (i.e. when fm_kernels is imported) whether kernels are
# interpreted, so TRITON_INTERPRET=1 must be set before the import to run kernels on CPU tensors.
INTERPRETED = HAS_TRITON and os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

_INSTALL_HINT = (
    "backend='triton' needs Triton (`pip install triton`, Linux only); "
    "use backend='auto' or 'torch' to run the torch reference"
)


def select_backend(backend: str, *tensors: Tensor, name: str = "fm_kernels") -> str:
    """The one kernel-dispatch rule of every fm-* package: ``"torch"`` or ``"triton"`` for a call.

    - ``"torch"``: the torch reference.
    - ``"auto"``: Triton when it is importable, ``torch.compile`` is not tracing (inductor fuses
      the torch reference itself, and a hand-launched kernel would break the graph), and every
      tensor is on CUDA, or on the CPU while kernels are interpreted (``TRITON_INTERPRET=1``
      before ``import fm_kernels``); otherwise the torch reference, quietly.
    - ``"triton"``: Triton, or an error before any work: ``ImportError`` (saying what to
      install) without Triton, ``RuntimeError`` for tensors off CUDA unless interpreted. An
      explicit request never falls back.

    fm-core and fm-discrete call this through ``fm_core.ext.resolve_backend``, which adds one
    condition of their own: their ``"auto"`` considers CUDA tensors only (the interpreter is for
    tests, which ask for ``"triton"``).

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
        *tensors: the call's tensor arguments.
        name: the caller's name, for error messages.

    Returns:
        ``"torch"`` or ``"triton"``.

    Example:
        >>> select_backend("torch", torch.zeros(2))
        'torch'
    """
    check_choice("backend", backend, BACKENDS)
    if backend == "torch":
        return "torch"
    devices = {t.device.type for t in tensors}
    runnable = HAS_TRITON and (devices <= {"cuda"} or INTERPRETED)
    if backend == "auto":
        return "triton" if runnable and not torch.compiler.is_compiling() else "torch"
    if not HAS_TRITON:
        raise ImportError(f"{name}: {_INSTALL_HINT}")
    if not runnable:
        raise RuntimeError(
            f"{name}: backend='triton' needs CUDA tensors (got devices {sorted(devices)}); set "
            "TRITON_INTERPRET=1 before importing fm_kernels to interpret kernels on CPU"
        )
    return "triton"


# The value-check mode: a mode string, or a zero-argument callable returning one (fm-core links
# its switch, fm_core.utils.get_value_checks, here; see set_value_checks).
_value_checks: str | Callable[[], str] = "auto"


def set_value_checks(mode: str | Callable[[], str]) -> str | Callable[[], str]:
    """Set fm-kernels' value-check mode; return the previous setting.

    The modes are fm-core's (``"auto"``: eager mode on CPU tensors; ``"always"``: eager mode on
    any device; ``"off"``: never; never while ``torch.compile`` traces). ``mode`` may also be a
    zero-argument callable that returns the mode: fm-core passes its ``get_value_checks`` when it
    dispatches to fm-kernels and whenever its switch is set while fm-kernels is loaded, so that
    its one switch governs the kernels as well. A program that uses fm-kernels on its own sets a
    mode here.

    Args:
        mode: ``"auto"``, ``"always"``, ``"off"``, or a callable returning one of them.
    """
    global _value_checks
    if not callable(mode):
        check_choice("mode", mode, VALUE_CHECK_MODES)
    previous, _value_checks = _value_checks, mode
    return previous


def get_value_checks() -> str:
    """The current value-check mode (from the linked callable, when one is set)."""
    mode = _value_checks() if callable(_value_checks) else _value_checks
    return mode if mode in VALUE_CHECK_MODES else "auto"


def checks_enabled(*tensors: Tensor) -> bool:
    """Whether value checks run: fm-core's rule (``fm_core.ext.value_checks_enabled``).

    Never while ``torch.compile`` traces; mode ``"off"`` never; ``"always"`` in eager mode;
    ``"auto"`` (default) in eager mode when every tensor is on the CPU (no host sync on a GPU).
    """
    mode = get_value_checks()
    if mode == "off" or torch.compiler.is_compiling():
        return False
    return mode == "always" or all(t.device.type == "cpu" for t in tensors)


def unit_grad_output(grad_output: Tensor) -> bool:
    """Whether a scalar ``grad_output`` is known to be exactly 1 (``loss.backward()``), sync-free.

    Looked at only in eager mode on the CPU, where reading it costs nothing; elsewhere the answer
    is ``False`` and the caller multiplies by ``grad_output`` (one pass, no host sync).
    """
    if grad_output.requires_grad or grad_output.device.type != "cpu":
        return False
    if torch.compiler.is_compiling():
        return False
    return bool(grad_output == 1)


def check_nonempty(argument: str, n: int) -> None:
    """Raise ``ValueError`` for an empty batch: the one rule of every fm-* package (``B >= 1``)."""
    if n == 0:
        raise ValueError(f"{argument} must hold at least one row (N >= 1), got an empty batch")


def check_choice(argument: str, value: str, choices: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{argument} must be one of {tuple(choices)}, got {value!r}")


def check_floating(argument: str, x: Tensor) -> None:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{argument} must be a floating-point tensor, got dtype {x.dtype}")


def check_integer(argument: str, x: Tensor) -> None:
    """Raise ``TypeError`` unless ``x`` is an integer tensor (token ids)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{argument} must be an integer tensor of token ids, got dtype {x.dtype}")


def as_batch_vector(argument: str, x: Tensor | float, batch: int, like: Tensor) -> Tensor:
    """Return a per-sample coefficient as a contiguous ``[B]`` tensor.

    Accepts ``[B]``, ``[B, 1, ..., 1]`` (a scheduler output already broadcast against the data),
    a 0-d tensor or a Python number (one value for the whole batch).

    Args:
        argument: the argument name, for error messages.
        x: the coefficient.
        batch: ``B``.
        like: a tensor whose device the result lands on.

    Returns:
        ``[B]`` floating-point tensor.
    """
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return torch.full((batch,), float(x), device=like.device, dtype=torch.float32)
    check_floating(argument, x)
    if x.dim() == 0:
        return x.reshape(1).expand(batch).contiguous()
    if x.shape[0] != batch or x.numel() != batch:
        raise ValueError(
            f"{argument} must have shape [B] = [{batch}] (or [B, 1, ...]), got {tuple(x.shape)}"
        )
    if x.device != like.device:
        raise ValueError(f"{argument} is on {x.device}, expected {like.device}")
    return x.reshape(batch).contiguous()


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """fp64 when any input is fp64, else fp32: kernels never do arithmetic in bf16/fp16."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


@triton.jit
def to_storage(x, ptr):
    """Cast a COMPUTE-dtype value for ``tl.store(ptr, ...)``.

    fp64 -> bf16/fp16 goes through fp32: the Triton 3.9 interpreter turns a direct fp64 -> bf16
    cast into zeros (and on a GPU the extra rounding step is far below the bf16 ulp).
    """
    if ptr.dtype.element_ty == tl.float64:
        y = x.to(tl.float64)
    else:
        y = x.to(tl.float32).to(ptr.dtype.element_ty)
    return y


def tl_dtype(dtype: torch.dtype):
    """The Triton dtype matching :func:`compute_dtype`'s result."""
    return tl.float64 if dtype == torch.float64 else tl.float32
