"""Validation shared by the discrete losses and the ELBO."""

from __future__ import annotations

from torch import Tensor

from fm_core.utils.checks import (
    check_batch_size,
    check_floating,
    check_same_device,
    check_time,
    check_time_range,
)
from fm_discrete._checks import check_tokens

__all__ = ["REDUCTIONS", "check_loss_inputs", "check_reduction", "reduce"]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: object) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction  # type: ignore[return-value]


def check_loss_inputs(logits: Tensor, x_1: Tensor, x_t: Tensor | None, t: Tensor | None) -> None:
    """``logits [B, ..., V]``; ``x_1``, ``x_t`` ``[B, ...]`` with ids in ``[0, V)``; ``t [B]`` in [0, 1].

    Token ranges and ``t``'s range are value checks (eager mode on CPU, see
    ``fm_core.utils.checks``); shapes, dtypes, devices and ``B >= 1`` are always checked.
    """
    check_floating(logits, "logits")
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape [B, ..., V], got {tuple(logits.shape)}")
    check_batch_size(logits, "logits")
    check_same_device([("logits", logits), ("x_1", x_1), ("x_t", x_t), ("t", t)])
    vocab = logits.shape[-1]
    check_tokens(x_1, "x_1", vocab)
    if x_1.shape != logits.shape[:-1]:
        raise ValueError(
            f"x_1 must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, got {tuple(x_1.shape)}"
        )
    if x_t is not None:
        check_tokens(x_t, "x_t", vocab)
        if x_t.shape != x_1.shape:
            raise ValueError(
                f"x_t must have the shape of x_1 {tuple(x_1.shape)}, got {tuple(x_t.shape)}"
            )
    if t is not None:
        check_time(t, x_1.shape[0])
        check_time_range(t)


def reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
