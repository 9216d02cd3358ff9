"""fm-image: train, sample and evaluate image flow models, from a CPU demo to multi-GPU runs.

The command line is ``fm-image train | sample | evaluate | demo`` (``fm_image.cli``); the
training recipe is ``fm_image.train``, the data sets ``fm_image.data``, the networks
``fm_image.models``. The flow-matching pieces come from fm-core (continuous flows) and
fm-discrete (``--flow discrete``); checkpoints, EMA, DDP and metrics from ``fm_core.training``.
"""

from importlib.metadata import version as _version

from fm_image.config import TrainConfig
from fm_image.train import train

__version__ = _version("fm-image")
__all__ = ["TrainConfig", "__version__", "train"]
