"""Triton-fused GPU kernels for flow matching, each with a pure-torch reference.

Every public function takes plain tensors and scalars, validates them before any work, and runs a
Triton kernel on CUDA tensors (or on CPU tensors when ``TRITON_INTERPRET=1`` was set before this
package was imported); otherwise, or with ``backend="torch"``, it runs the matching function of
:mod:`fm_kernels.reference`. ``import fm_kernels`` works without Triton installed.
"""

from importlib.metadata import version as _version

from fm_kernels import reference
from fm_kernels._dispatch import BACKENDS, HAS_TRITON, INTERPRETED
from fm_kernels.affine_interpolate import affine_interpolate
from fm_kernels.fm_loss import fm_loss
from fm_kernels.generalized_kl import generalized_kl
from fm_kernels.generalized_kl_linear import generalized_kl_linear
from fm_kernels.mixture_euler_step import mixture_euler_step
from fm_kernels.mixture_sample import mixture_sample

__version__ = _version("fm-kernels")
__all__ = [
    "BACKENDS",
    "HAS_TRITON",
    "INTERPRETED",
    "__version__",
    "affine_interpolate",
    "fm_loss",
    "generalized_kl",
    "generalized_kl_linear",
    "mixture_euler_step",
    "mixture_sample",
    "reference",
]
