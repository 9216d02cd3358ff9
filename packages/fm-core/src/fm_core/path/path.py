"""The probability-path interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from torch import Tensor

from fm_core.utils.checks import (
    check_batch_size,
    check_same_device,
    check_tensor,
    check_time,
    check_time_range,
)

__all__ = ["ProbPath"]


class ProbPath(ABC):
    r"""A family of conditional paths $p_t(x \mid x_0, x_1)$ from a source to a target, $t \in [0, 1]$.

    Implementations: ``AffineProbPath`` (fm_core), ``MixtureDiscreteProbPath`` (fm_discrete),
    ``GeodesicProbPath`` (fm_riemann). ``fm_core.testing.ProbPathTests`` holds the properties
    every implementation must have.
    """

    @abstractmethod
    def sample(self, x_0: Tensor, x_1: Tensor, t: Tensor) -> Any:
        r"""Sample $x_t$ given source ``x_0`` and target ``x_1`` (both ``[B, ...]``) at ``t`` (``[B]``)."""

    def assert_sample_shape(self, x_0: Tensor, x_1: Tensor, t: Tensor) -> None:
        """Check the arguments of ``sample`` and raise ``ValueError``/``TypeError`` naming the culprit.

        ``x_0`` and ``x_1`` must be tensors of one shape ``[B, ...]`` with ``B >= 1``, on one
        device; ``t`` a floating tensor of shape ``[B]`` on that device with values in ``[0, 1]``
        (a value check: eager mode on CPU, see ``fm_core.utils.checks``).
        """
        check_tensor(x_0, "x_0")
        check_tensor(x_1, "x_1")
        check_batch_size(x_0, "x_0")
        if x_0.shape != x_1.shape:
            raise ValueError(
                f"x_1 must have the shape of x_0: expected {tuple(x_0.shape)}, got {tuple(x_1.shape)}"
            )
        check_time(t, x_0.shape[0])
        check_same_device([("x_0", x_0), ("x_1", x_1), ("t", t)])
        check_time_range(t)
