"""Image generation with flow matching: data, UNet, training, sampling, evaluation and a CLI.

This package is a shell until its issue lands: it carries a version and nothing else yet.
"""

from importlib.metadata import version as _version

__version__ = _version("fm-image")
__all__ = ["__version__"]
