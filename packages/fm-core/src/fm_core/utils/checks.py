"""Input checks shared by every fm-* package, and the one switch that governs value checks.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument and says what was
expected, so bad input fails before any work starts. There are two kinds (see
docs/fm-core/validation.md):

- **Metadata checks** (type, dtype, shape, device, batch size): free, always on, also under
  ``torch.compile`` (they read only static metadata).
- **Value checks** (``t`` in ``[0, 1]``, token ids in range, probabilities, points on a
  manifold, finite outputs) read tensor *values*. Reading a value back on a GPU is a host
  synchronisation, and under ``torch.compile`` it breaks the graph. So they run only when
  ``value_checks_enabled(*tensors)`` is true: by default (mode ``"auto"``) in eager mode on CPU
  tensors. They are skipped while ``torch.compile`` traces and on accelerators, unless the mode is
  ``"always"`` (eager accelerators too, one sync per check: for debugging); ``"off"`` skips them.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = [
    "VALUE_CHECK_MODES",
    "check_batch_size",
    "check_choice",
    "check_finite",
    "check_floating",
    "check_log_density",
    "check_open_unit",
    "check_same_device",
    "check_same_shape",
    "check_tensor",
    "check_time",
    "check_time_range",
    "get_value_checks",
    "set_value_checks",
    "value_checks",
    "value_checks_enabled",
]

#: ``"auto"``: eager mode on CPU tensors; ``"always"``: eager mode on any device (syncs);
#: ``"off"``: never. No mode runs a value check while ``torch.compile`` traces.
VALUE_CHECK_MODES = ("auto", "always", "off")
_mode = "auto"


def set_value_checks(mode: str) -> str:
    """Set the value-check mode for every fm-* package; return the previous mode.

    Args:
        mode: ``"auto"`` (default), ``"always"`` or ``"off"`` (see ``VALUE_CHECK_MODES``).
    """
    global _mode
    if mode not in VALUE_CHECK_MODES:
        raise ValueError(f"mode must be one of {VALUE_CHECK_MODES}, got {mode!r}")
    previous, _mode = _mode, mode
    link_fm_kernels()
    return previous


def link_fm_kernels(module: object = None) -> None:
    """Point fm-kernels' value-check mode at this switch (``fm_kernels.set_value_checks``).

    fm-kernels is an optional leaf that never looks for fm-core, so fm-core links it: when it
    dispatches to a kernel (``module`` is then fm_kernels), and whenever this switch is set while
    fm_kernels is loaded (it is never imported here: importing Triton takes seconds).
    """
    module = module if module is not None else sys.modules.get("fm_kernels")
    link = getattr(module, "set_value_checks", None)
    if link is not None:
        link(get_value_checks)


def get_value_checks() -> str:
    """The current value-check mode: ``"auto"``, ``"always"`` or ``"off"``."""
    return _mode


@contextlib.contextmanager
def value_checks(mode: str) -> Iterator[None]:
    """Context manager: run the block with value-check ``mode``, then restore the previous one.

    Example:
        >>> with value_checks("always"):  # also check CUDA tensors (one sync per check)
        ...     pass
    """
    previous = set_value_checks(mode)
    try:
        yield
    finally:
        set_value_checks(previous)


def value_checks_enabled(*tensors: Tensor) -> bool:
    """Whether value checks run for a call on ``tensors`` (see the module notes).

    False while ``torch.compile`` traces (so a compiled graph holds no check and no break),
    false in mode ``"off"``; in mode ``"auto"`` true only when every tensor is on the CPU.
    """
    if _mode == "off" or torch.compiler.is_compiling():
        return False
    if _mode == "always":
        return True
    return all(t.device.type == "cpu" for t in tensors if isinstance(t, Tensor))


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``; return it."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


def check_tensor(x: object, name: str) -> Tensor:
    """Raise ``TypeError`` unless ``x`` is a ``torch.Tensor``; return it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def check_floating(x: object, name: str) -> Tensor:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor; return it."""
    x = check_tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16/bfloat16/float32/float64), "
            f"got dtype {x.dtype}; convert it with {name}.float()"
        )
    return x


def check_same_shape(tensors: Sequence[tuple[str, Tensor]]) -> None:
    """Raise ``ValueError`` unless all the named tensors have one shape."""
    (first_name, first), *rest = tensors
    for name, x in rest:
        if x.shape != first.shape:
            raise ValueError(
                f"{name} must have the same shape as {first_name}: "
                f"expected {tuple(first.shape)}, got {tuple(x.shape)}"
            )


def check_time(t: object, batch_size: int, name: str = "t") -> Tensor:
    """Check that ``t`` is a floating tensor of shape ``[batch_size]``; return it."""
    t = check_floating(t, name)
    if t.ndim != 1 or t.shape[0] != batch_size:
        raise ValueError(
            f"{name} must have shape [batch_size] = [{batch_size}] (one time per sample), "
            f"got {tuple(t.shape)}"
        )
    return t


def check_batch_size(x: Tensor, name: str) -> int:
    """Raise ``ValueError`` unless ``x`` has a batch dimension with at least one sample; return B.

    The one rule for empty batches in every fm-* package: ``B = 0`` is an error, raised before
    any work (an empty batch has no loss, no sample and no likelihood worth returning).
    """
    if x.ndim == 0:
        raise ValueError(f"{name} must have a batch dimension, shape [B, ...], got a 0-dim tensor")
    if x.shape[0] == 0:
        raise ValueError(
            f"{name} must hold at least one sample (B >= 1), got an empty batch of shape "
            f"{tuple(x.shape)}"
        )
    return x.shape[0]


def check_same_device(tensors: Sequence[tuple[str, Tensor]]) -> None:
    """Raise ``ValueError`` unless the named tensors share one device, naming both devices.

    Example: ``x_1 is on cuda:0 but x_0 is on cpu: move them to one device``. ``None`` entries
    are skipped, and so are 0-dim CPU tensors, which torch combines with tensors on any device.
    """
    (first_name, first), *rest = tensors
    for name, x in rest:
        if not isinstance(x, Tensor) or (x.ndim == 0 and x.device.type == "cpu"):
            continue
        if x.device != first.device:
            raise ValueError(
                f"{name} is on {x.device} but {first_name} is on {first.device}: "
                "move them to one device"
            )


def check_time_range(t: Tensor, name: str = "t", low: float = 0.0, high: float = 1.0) -> None:
    """Raise ``ValueError`` if any entry of ``t`` lies outside ``[low, high]`` or is NaN.

    A value check: runs only when ``value_checks_enabled(t)`` (eager mode on CPU by default).
    """
    if t.numel() == 0 or not value_checks_enabled(t):
        return
    bad = ~((t >= low) & (t <= high))  # also catches NaN
    if bool(bad.any()):
        first = t[bad].flatten()[0].item()
        raise ValueError(f"{name} must lie in [{low}, {high}], got a value {first!r}")


def check_finite(x: Tensor, name: str, hint: str = "") -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinity. A value check (see the module notes).

    Args:
        x: any tensor.
        name: what ``x`` is, for the message.
        hint: an extra sentence for the message (e.g. where the non-finite values come from).
    """
    if not x.is_floating_point() or x.numel() == 0 or not value_checks_enabled(x):
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        message = f"{name} holds {bad} non-finite value(s) (NaN or inf) out of {x.numel()}"
        raise ValueError(message + (f"; {hint}" if hint else ""))


def check_open_unit(value: object, name: str, *, low_open: bool = True) -> float:
    """Raise ``ValueError`` unless ``value`` is a real number in ``(0, 1)``; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and (v > 0 if low_open else v >= 0) and v < 1):
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")
    return v


def check_log_density(value: object, batch_size: int, name: str = "log_p0") -> Tensor:
    """Raise unless a log-density callable returned a floating tensor of shape ``[batch_size]``.

    A ``[B, 1]`` result would broadcast against the ``[B]`` divergence integral into ``[B, B]``,
    and a 0-dim one would give every sample the same density: both are errors, not broadcasts,
    except a 0-dim result for a batch of one, which is unambiguous (the reference's own tests
    return one) and is taken as shape ``[1]``.
    """
    if not isinstance(value, Tensor) or not value.is_floating_point():
        got = value.dtype if isinstance(value, Tensor) else type(value).__name__
        raise TypeError(f"{name} must return a floating tensor of shape [B], got {got}")
    if value.ndim == 0 and batch_size == 1:
        return value.reshape(1)
    if value.shape != (batch_size,):
        raise ValueError(
            f"{name} must return one log-density per sample, shape [B] = [{batch_size}], got "
            f"{tuple(value.shape)} (sum over the event dimensions, e.g. .sum(-1), or squeeze a "
            "trailing 1)"
        )
    return value
