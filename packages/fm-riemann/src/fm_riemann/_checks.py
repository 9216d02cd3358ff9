"""Manifold-membership checks shared by ``GeodesicProbPath`` and ``RiemannianODESolver``.

Membership is a value check (it reads the points): it follows
``fm_core.utils.checks.value_checks_enabled``, so it runs in eager mode on CPU tensors by default
and never syncs a GPU or breaks a ``torch.compile`` graph. Shape and dtype always get checked.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fm_core.utils.checks import check_floating, value_checks_enabled

__all__ = ["check_on_manifold", "membership_tolerance"]


def membership_tolerance(dtype: torch.dtype) -> float:
    """Absolute and relative tolerance of the membership check: 1e-4 below float64, else 1e-7."""
    return 1e-7 if dtype == torch.float64 else 1e-4


def check_on_manifold(manifold, x: Tensor, name: str, *, hint: str = "") -> None:
    """Raise ``ValueError`` unless the points ``x`` (``[B, *point_shape]``) lie on ``manifold``.

    ``TypeError`` for a non-floating ``x`` (integer points are never on a manifold of ours).
    Manifolds without a membership test (geoopt's base raises ``NotImplementedError``) pass.

    Args:
        manifold: a geoopt manifold.
        x: points.
        name: the argument name, for the message.
        hint: what to do about it, appended to the message.
    """
    check_floating(x, name)
    if not value_checks_enabled(x):
        return
    tol = membership_tolerance(x.dtype)
    try:
        ok, reason = manifold.check_point_on_manifold(x, explain=True, atol=tol, rtol=tol)
    except NotImplementedError:
        return
    if not ok:
        fix = hint or "project the points with manifold.projx first"
        raise ValueError(
            f"{name} must lie on the manifold {getattr(manifold, 'name', type(manifold).__name__)}: "
            f"{reason} ({fix})"
        )
