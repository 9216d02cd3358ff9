"""Autograd helpers."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gradient"]


def gradient(
    output: Tensor,
    x: Tensor,
    grad_outputs: Tensor | None = None,
    create_graph: bool = False,
) -> Tensor:
    r"""Vector-Jacobian product $v^\top \partial\,\mathrm{output} / \partial x$.

    Args:
        output: tensor computed from ``x``.
        x: tensor with ``requires_grad=True``.
        grad_outputs: the vector $v$, shape of ``output``; ones when ``None``
            (so the result is the gradient of ``output.sum()``).
        create_graph: keep the graph of the derivative for higher-order derivatives.

    Returns:
        Tensor of the shape of ``x``.
    """
    if grad_outputs is None:
        grad_outputs = torch.ones_like(output).detach()
    (grad,) = torch.autograd.grad(output, x, grad_outputs, create_graph=create_graph)
    return grad
