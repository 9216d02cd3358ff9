"""Time and class embeddings shared by the image networks."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ConditionEmbedding", "broadcast_time", "sinusoidal_embedding"]

#: Sinusoid scale of flow-map networks (as for velocity networks). The MeanFlow loss differentiates
#: the network in t, and at 1000 d u/d t was ~950 on the digits MLP; but runs at 1 and 50 (with
#: uniform time pairs, 75 % r != t) learnt nothing usable in 1 000-1 200 steps, and neither did one
#: at 1000 with those pairs, while 1000 with MeanFlow's pairs did (benchmarks/RESULTS.md).
FLOW_MAP_TIME_SCALE = 1000.0


def broadcast_time(t: Tensor, batch: int) -> Tensor:
    """``t`` of shape ``[]`` or ``[B]`` -> float ``[B]`` (solvers pass one 0-dim time per step)."""
    t = t.float() if t.dtype != torch.float32 else t
    return t.reshape(1).expand(batch) if t.ndim == 0 else t


def sinusoidal_embedding(
    t: Tensor, dim: int, max_period: float = 10_000.0, scale: float = 1000.0
) -> Tensor:
    r"""Transformer-style features of ``t`` (``[B]``, in $[0, 1]$, times ``scale``): ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = (scale * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class ConditionEmbedding(nn.Module):
    r"""$e(t, y)$ = MLP(sinusoidal($t$)) + Embedding($y$), with class ``num_classes`` the null class.

    Args:
        base_dim: width of the sinusoidal features.
        dim: output width.
        num_classes: number of real classes (0: unconditional); the embedding table has one
            more row, the null class used for classifier-free guidance.
        flow_map: also embed the jump length $r - t$ of a flow-map model (MeanFlow's $(t, t - r)$
            conditioning) with a second time MLP, added to the first (sinusoid scale
            ``FLOW_MAP_TIME_SCALE``).

    Shapes: ``t`` ``[B]``, ``label`` ``[B]`` int64 in ``[0, num_classes]`` or ``None`` (null),
    ``r`` ``[B]`` (flow maps only) -> ``[B, dim]``.
    """

    def __init__(
        self, base_dim: int, dim: int, num_classes: int, *, flow_map: bool = False
    ) -> None:
        super().__init__()
        self.base_dim = base_dim
        self.num_classes = num_classes
        self.time = nn.Sequential(nn.Linear(base_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None
        self.time_scale = FLOW_MAP_TIME_SCALE if flow_map else 1000.0
        self.gap = (
            nn.Sequential(nn.Linear(base_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
            if flow_map
            else None
        )

    def forward(self, t: Tensor, label: Tensor | None, r: Tensor | None = None) -> Tensor:
        emb = self.time(sinusoidal_embedding(t, self.base_dim, scale=self.time_scale))
        if (r is None) != (self.gap is None):
            raise ValueError(
                "r (the flow map's end time) must be given exactly when the network was built "
                f"with flow_map=True (this one: flow_map={self.gap is not None})"
            )
        if self.gap is not None:
            gap = broadcast_time(r, t.shape[0]) - t
            emb = emb + self.gap(sinusoidal_embedding(gap, self.base_dim, scale=self.time_scale))
        if self.label is not None:
            if label is None:
                label = torch.full((t.shape[0],), self.num_classes, device=t.device)
            emb = emb + self.label(label)
        return emb
