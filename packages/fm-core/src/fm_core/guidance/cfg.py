r"""Classifier-free guidance (Ho & Salimans, 2022) for any ``ModelWrapper``, in one batched call."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from fm_core.utils.checks import check_tensor
from fm_core.utils.model_wrapper import ModelWrapper

__all__ = ["CFGScaledModel"]


def _check_scale(value: object, name: str = "guidance_scale") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (0 = no guidance), got {value!r}")
    return float(value)


def null_like(labels: Tensor, null_label: int | float | Tensor) -> Tensor:
    """The null label broadcast to the shape, dtype and device of ``labels`` (``[B, ...]``)."""
    if isinstance(null_label, Tensor):
        try:
            return null_label.to(device=labels.device, dtype=labels.dtype).expand_as(labels)
        except RuntimeError:
            raise ValueError(
                f"null_label of shape {tuple(null_label.shape)} must broadcast to the labels' "
                f"shape {tuple(labels.shape)} (e.g. a scalar, or one label without the batch dim)"
            ) from None
    return torch.full_like(labels, null_label)


def check_null_label(null_label: object) -> None:
    """Raise ``TypeError`` unless ``null_label`` is an int, a float or a tensor."""
    if isinstance(null_label, bool) or not isinstance(null_label, (int, float, Tensor)):
        raise TypeError(
            f"null_label must be an int (e.g. the extra class index), a float or a Tensor, "
            f"got {type(null_label).__name__}"
        )


class CFGScaledModel(ModelWrapper):
    r"""Classifier-free guidance: $\tilde u = (1 + w)\, u(x, t \mid y) - w\, u(x, t \mid \varnothing)$.

    The conditional and unconditional predictions come from ONE call of the wrapped model on a
    batch of size $2B$: ``x`` and ``t`` repeated, and the labels followed by $B$ null labels.
    $w = 0$ is the conditional model (and skips the unconditional half); $w = -1$ is the
    unconditional one. (Some papers write $u_\varnothing + s\,(u_y - u_\varnothing)$; that is
    $s = 1 + w$.) The same combination holds for $x_1$- and $\epsilon$-predicting models, being
    affine in the prediction.

    Other keyword extras are passed to the model; a tensor extra whose first dimension is the
    batch size $B$ is repeated for both halves, anything else is passed unchanged.

    Args:
        model: the conditional network, an ``nn.Module`` (a ``ModelWrapper`` or any module called
            as ``model(x=x, t=t, **extras)``), trained with labels dropped to ``null_label``
            (see ``drop_labels``).
        guidance_scale: $w$, a finite float (0 = the conditional model).
        null_label: the "no label" value: an int (e.g. ``num_classes``), a float, or a tensor
            that broadcasts to one sample's label (e.g. a zero embedding of shape ``[D]``).
        label_key: the keyword under which the model takes labels (default ``"label"``).

    Example:
        >>> class Net(torch.nn.Module):  # a velocity with a per-class offset; 10 = no label
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.offset = torch.nn.Embedding(11, 2)
        ...     def forward(self, x, t, label):
        ...         return -x + self.offset(label)
        >>> guided = CFGScaledModel(Net(), guidance_scale=2.0, null_label=10)
        >>> x_1 = ODESolver(guided).sample(x_init=torch.randn(4, 2), step_size=0.05,
        ...                                label=torch.tensor([0, 1, 2, 3]))
        >>> x_1.shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        model: nn.Module,
        guidance_scale: float,
        null_label: int | float | Tensor,
        label_key: str = "label",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        super().__init__(model)
        self.guidance_scale = _check_scale(guidance_scale)
        check_null_label(null_label)
        self.null_label = null_label
        if not isinstance(label_key, str) or not label_key:
            raise ValueError(f"label_key must be a non-empty str, got {label_key!r}")
        self.label_key = label_key

    def forward(
        self, x: Tensor, t: Tensor, *, guidance_scale: float | None = None, **extras: Any
    ) -> Tensor:
        """The guided prediction at ``x`` (``[B, ...]``) and ``t`` (``[B]`` or 0-dim).

        Args:
            x: state, shape ``[B, ...]``.
            t: time, shape ``[B]`` or a 0-dim tensor.
            guidance_scale: overrides the scale set at construction for this call.
            **extras: must hold the labels under ``label_key``, shape ``[B, ...]``; the rest are
                forwarded to the model.

        Returns:
            The guided output, shape of the model's output for ``x``.
        """
        w = self.guidance_scale if guidance_scale is None else _check_scale(guidance_scale)
        if self.label_key not in extras:
            raise ValueError(
                f"CFGScaledModel needs the labels as the keyword argument {self.label_key!r} "
                f"(label_key); got keywords {sorted(extras)}"
            )
        labels = check_tensor(extras.pop(self.label_key), self.label_key)
        check_tensor(x, "x")
        batch = x.shape[0]
        if labels.ndim == 0 or labels.shape[0] != batch:
            raise ValueError(
                f"{self.label_key} must have shape [B, ...] with B = {batch} (the batch of x), "
                f"got {tuple(labels.shape)}"
            )
        if w == 0.0:
            return self.model(x=x, t=t, **extras, **{self.label_key: labels})
        doubled = {
            k: torch.cat([v, v]) if isinstance(v, Tensor) and v.ndim and v.shape[0] == batch else v
            for k, v in extras.items()
        }
        t2 = torch.cat([t, t]) if isinstance(t, Tensor) and t.ndim else t
        labels2 = torch.cat([labels, null_like(labels, self.null_label)])
        out = self.model(x=torch.cat([x, x]), t=t2, **doubled, **{self.label_key: labels2})
        cond, uncond = out[:batch], out[batch:]
        return (1.0 + w) * cond - w * uncond

    def extra_repr(self) -> str:
        return f"guidance_scale={self.guidance_scale:g}, label_key={self.label_key!r}"
