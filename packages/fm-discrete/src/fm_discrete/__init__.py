"""Discrete flow matching on token sequences: mixture paths, CTMC samplers, generalized-KL loss and ELBO.

This package is a shell until its issue lands: it carries a version and nothing else yet.
"""

from importlib.metadata import version as _version

__version__ = _version("fm-discrete")
__all__ = ["__version__"]
