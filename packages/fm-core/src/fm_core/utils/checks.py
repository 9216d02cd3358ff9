"""Input checks shared by every fm-* package.

Each check raises a ``ValueError`` or ``TypeError`` that names the argument and says what was
expected, so bad input fails before any work starts. Checks that need a value from the device
(``check_time_range``) cost one host synchronisation; the solvers avoid them inside their loops.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

__all__ = [
    "check_floating",
    "check_same_shape",
    "check_tensor",
    "check_time",
    "check_time_range",
]


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


def check_time_range(t: Tensor, name: str = "t", low: float = 0.0, high: float = 1.0) -> None:
    """Raise ``ValueError`` if any entry of ``t`` lies outside ``[low, high]`` or is NaN.

    One host synchronisation when ``t`` is on an accelerator.
    """
    if t.numel() == 0:
        return
    bad = ~((t >= low) & (t <= high))  # also catches NaN
    if bool(bad.any()):
        first = t[bad].flatten()[0].item()
        raise ValueError(f"{name} must lie in [{low}, {high}], got a value {first!r}")
