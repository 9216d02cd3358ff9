"""fm-text: discrete flow-matching text generation, trained and judged end to end.

Corpora that need no download (``pydoc``, ``pystdlib``, local files), a byte-level BPE from Hugging
Face ``tokenizers``, a diffusion transformer and its autoregressive twin, a training recipe on
fm-discrete and ``fm_core.training`` (DDP through ``torchrun``), infilling, and the ELBO perplexity
bound. The command line is ``fm-text train | sample | evaluate | demo``.
"""

from importlib.metadata import version as _version

from fm_text.config import TrainConfig
from fm_text.model import ModelConfig, TextTransformer

__version__ = _version("fm-text")
__all__ = ["ModelConfig", "TextTransformer", "TrainConfig", "__version__"]
