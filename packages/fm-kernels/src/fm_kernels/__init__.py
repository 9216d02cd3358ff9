"""Triton-fused GPU kernels for flow matching, each with a pure-torch reference.

This package is a shell until its issue lands: it carries a version and nothing else yet.
"""

from importlib.metadata import version as _version

__version__ = _version("fm-kernels")
__all__ = ["__version__"]
