"""Triton-fused GPU kernels for flow matching, each with a pure-torch reference.

Every public function takes plain tensors and scalars, validates them before any work, and runs a
Triton kernel on CUDA tensors (or on CPU tensors when ``TRITON_INTERPRET=1`` was set before this
package was imported); otherwise, or with ``backend="torch"``, it runs the matching function of
:mod:`fm_kernels.reference`. ``import fm_kernels`` works without Triton installed.

:func:`select_backend` is the one dispatch rule (fm-core and fm-discrete call it through
``fm_core.ext.resolve_backend``); :func:`set_value_checks` sets the value-check mode (fm-core
links its own switch here).
"""

from importlib.metadata import version as _version

from fm_kernels import reference
from fm_kernels._dispatch import (
    BACKENDS,
    HAS_TRITON,
    INTERPRETED,
    get_value_checks,
    select_backend,
    set_value_checks,
)
from fm_kernels._fm_loss import fm_loss
from fm_kernels._generalized_kl import generalized_kl
from fm_kernels._generalized_kl_linear import generalized_kl_linear
from fm_kernels._mixture_euler_step import mixture_euler_step

__version__ = _version("fm-kernels")
__all__ = [
    "BACKENDS",
    "HAS_TRITON",
    "INTERPRETED",
    "__version__",
    "fm_loss",
    "generalized_kl",
    "generalized_kl_linear",
    "get_value_checks",
    "mixture_euler_step",
    "reference",
    "select_backend",
    "set_value_checks",
]
