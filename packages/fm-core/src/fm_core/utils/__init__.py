"""Utilities shared by every fm-* package (mirrors ``flow_matching.utils``)."""

from fm_core.utils.autograd import gradient
from fm_core.utils.categorical import categorical
from fm_core.utils.checks import (
    check_floating,
    check_same_shape,
    check_tensor,
    check_time,
    check_time_range,
    get_value_checks,
    set_value_checks,
    value_checks,
)
from fm_core.utils.model_wrapper import ModelWrapper
from fm_core.utils.tensor import expand_tensor_like, unsqueeze_to_match

__all__ = [
    "ModelWrapper",
    "categorical",
    "check_floating",
    "check_same_shape",
    "check_tensor",
    "check_time",
    "check_time_range",
    "expand_tensor_like",
    "get_value_checks",
    "gradient",
    "set_value_checks",
    "unsqueeze_to_match",
    "value_checks",
]
