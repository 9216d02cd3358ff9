"""Utilities (mirrors ``flow_matching.utils``) and the value-check switch of every fm-* package.

The input checks and other helpers sibling packages build on are in :mod:`fm_core.ext`.
"""

from fm_core.utils.autograd import gradient
from fm_core.utils.categorical import categorical
from fm_core.utils.checks import get_value_checks, set_value_checks, value_checks
from fm_core.utils.model_wrapper import ModelWrapper
from fm_core.utils.tensor import expand_tensor_like, unsqueeze_to_match

__all__ = [
    "ModelWrapper",
    "categorical",
    "expand_tensor_like",
    "get_value_checks",
    "gradient",
    "set_value_checks",
    "unsqueeze_to_match",
    "value_checks",
]
