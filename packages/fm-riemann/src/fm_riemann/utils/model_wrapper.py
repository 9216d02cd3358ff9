"""A model wrapper that makes any network a tangent vector field on a manifold."""

from __future__ import annotations

from typing import Any

import geoopt
from torch import Tensor, nn

from fm_core.utils.model_wrapper import ModelWrapper

__all__ = ["ProjectToTangent"]


class ProjectToTangent(ModelWrapper):
    r"""Wrap ``model`` so its output is a tangent vector: $u(x, t) = P_x\,\mathrm{model}(\pi(x), t)$.

    $\pi$ is ``manifold.projx`` (applied to the input when ``projx=True``, so that the network
    sees points exactly on the manifold) and $P_x$ is ``manifold.proju``. On embedded manifolds
    the network can then output any ambient vector.

    Args:
        model: network called as ``model(x=x, t=t, **extras)``, returning a tensor shaped like ``x``.
        manifold: the geoopt manifold.
        projx: project the input point first (keyword-only, default ``True``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from fm_riemann import Sphere
        >>> class Net(nn.Module):
        ...     def forward(self, x, t):
        ...         return torch.ones_like(x)
        >>> wrapped = ProjectToTangent(Net(), Sphere())
        >>> wrapped(x=torch.tensor([[0.0, 0.0, 1.0]]), t=torch.tensor(0.0))
        tensor([[1., 1., 0.]])
    """

    def __init__(self, model: nn.Module, manifold: geoopt.Manifold, *, projx: bool = True):
        super().__init__(model)
        self.manifold = manifold
        self.projx = projx

    def forward(self, x: Tensor, t: Tensor, **extras: Any) -> Tensor:
        """Tangent velocity at ``x`` (shape ``[B, *point_shape]``), time ``t`` (``[B]`` or 0-dim)."""
        if self.projx:
            x = self.manifold.projx(x)
        return self.manifold.proju(x, self.model(x=x, t=t, **extras))
