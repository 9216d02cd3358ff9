"""The one reduction rule of every fm-* loss (see docs/fm-core/loss.md, "Reductions").

A loss first computes its unreduced values: one per sample for the continuous losses (the
squared error averaged over the sample's coordinates, times its weight), one per position for
the discrete ones (the reference ``flow_matching``'s ``MixturePathGeneralizedKL`` returns those).
``reduction="none"`` returns them; ``"mean"`` is their mean and ``"sum"`` their sum, so
``loss(reduction="mean") == loss(reduction="none").mean()`` holds for every loss.
"""

from __future__ import annotations

from torch import Tensor

from fm_core.utils.checks import check_choice

__all__ = ["REDUCTIONS", "check_reduction", "mean_over_coordinates", "reduce_loss"]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: object) -> str:
    """Raise ``ValueError`` unless ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``; return it."""
    return check_choice(reduction, "reduction", REDUCTIONS)


def mean_over_coordinates(x: Tensor) -> Tensor:
    """``[B, ...]`` -> ``[B]``: the mean over every non-batch dimension (a ``[B]`` input is kept)."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


def reduce_loss(values: Tensor, reduction: str) -> Tensor:
    """Reduce a loss's unreduced ``values``: their mean, their sum, or ``values`` (``"none"``).

    Args:
        values: the per-sample (``[B]``) or per-position (``[B, ...]``) loss.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (checked by the loss's constructor).

    Returns:
        A 0-dim tensor, or ``values`` for ``"none"``.
    """
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values
