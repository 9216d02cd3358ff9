"""An MLP velocity field over flattened images: the fastest model for 8x8 digits on a CPU."""

from __future__ import annotations

from torch import Tensor, nn

from fm_image.models.embedding import ConditionEmbedding, broadcast_time

__all__ = ["MLPVelocity"]


class MLPVelocity(nn.Module):
    r"""Residual MLP on flattened images with the time + class embedding added before each block.

    ``depth`` linear layers of width ``width``: an input layer, ``depth - 2`` residual hidden
    layers, an output layer (zero-initialised, so training starts from $u = 0$).

    Args:
        in_channels: channels of the input ``[B, C_in, H, W]``.
        out_channels: channels of the output ``[B, C_out, H, W]``.
        image_size: ``(H, W)``.
        num_classes: classes (0: unconditional); class ``num_classes`` is the null class.
        width: hidden width.
        depth: number of linear layers (>= 2).
        flow_map: take the end time ``r`` of a flow-map (average-velocity) model.

    Shapes: ``x`` ``[B, C_in, H, W]``, ``t`` ``[]`` or ``[B]``, ``label`` ``[B]``, ``r`` like ``t``
    (flow maps) -> ``[B, C_out, H, W]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        image_size: tuple[int, int],
        num_classes: int,
        *,
        width: int = 512,
        depth: int = 4,
        flow_map: bool = False,
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be >= 2, got {depth}")
        h, w = image_size
        self.out_shape = (out_channels, h, w)
        self.embed = ConditionEmbedding(128, width, num_classes, flow_map=flow_map)
        self.inp = nn.Linear(in_channels * h * w, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 2))
        self.act = nn.SiLU()
        self.out = nn.Linear(width, out_channels * h * w)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: Tensor, t: Tensor, label: Tensor | None = None, r: Tensor | None = None
    ) -> Tensor:
        b = x.shape[0]
        emb = self.embed(broadcast_time(t, b), label, r)
        h = self.inp(x.reshape(b, -1))
        for layer in self.hidden:
            h = h + layer(self.act(h + emb))
        return self.out(self.act(h + emb)).reshape(b, *self.out_shape)
