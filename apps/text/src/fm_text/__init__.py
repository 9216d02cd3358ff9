"""Discrete text generation with flow matching: corpus, tokenizer, transformer, training, sampling and ELBO perplexity.

This package is a shell until its issue lands: it carries a version and nothing else yet.
"""

from importlib.metadata import version as _version

__version__ = _version("fm-text")
__all__ = ["__version__"]
