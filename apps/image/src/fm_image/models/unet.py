"""An ADM-style UNet (Dhariwal & Nichol, 2021): residual blocks with time and class embeddings,
self-attention at chosen resolutions, and a null class for classifier-free guidance."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fm_image.models.embedding import ConditionEmbedding, broadcast_time

__all__ = ["UNet"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the embedding as a scale and shift of the second norm."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * cout))
        self.out_norm = _norm(cout)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), _zero(nn.Conv2d(cout, cout, 3, padding=1))
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_layers(self.out_norm(h) * (1 + scale) + shift)
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels (``scaled_dot_product_attention``)."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} must be divisible by num_heads {num_heads}")
        self.heads = num_heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, h * w))
        q, k, v = qkv.reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, C/heads]
        out = out.transpose(-1, -2).reshape(b, c, h * w)
        return x + self.proj(out).reshape(b, c, h, w)


class _Stage(nn.ModuleList):
    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, (ResBlock, AttentionBlock)) else layer(x)
        return x


class UNet(nn.Module):
    """ADM-style UNet velocity (or logits) network.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        image_size: ``(H, W)``; divisible by ``2 ** (len(channel_mult) - 1)``.
        num_classes: classes (0: unconditional); class ``num_classes`` is the null class.
        model_channels: base width.
        channel_mult: width multiplier per resolution level.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attention_resolutions: downsampling factors (1, 2, 4, ...) that get self-attention.
        dropout: dropout inside residual blocks.
        num_heads: attention heads.
        flow_map: take the end time ``r`` of a flow-map (average-velocity) model.

    Shapes: ``x`` ``[B, C_in, H, W]``, ``t`` ``[]`` or ``[B]``, ``label`` ``[B]`` -> ``[B, C_out, H, W]``.

    Example:
        >>> net = UNet(1, 1, (8, 8), 10, model_channels=16, channel_mult=(1, 2))
        >>> net(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([3, 10])).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        image_size: tuple[int, int],
        num_classes: int,
        *,
        model_channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: tuple[int, ...] = (2,),
        dropout: float = 0.0,
        num_heads: int = 1,
        flow_map: bool = False,
    ) -> None:
        super().__init__()
        factor = 2 ** (len(channel_mult) - 1)
        if image_size[0] % factor or image_size[1] % factor:
            raise ValueError(
                f"image size {image_size} must be divisible by {factor} for channel_mult "
                f"{tuple(channel_mult)}"
            )
        emb_dim = 4 * model_channels
        self.embed = ConditionEmbedding(model_channels, emb_dim, num_classes, flow_map=flow_map)
        self.inp = nn.Conv2d(in_channels, model_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [model_channels]
        ch, ds = model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                stage = _Stage([ResBlock(ch, model_channels * mult, emb_dim, dropout)])
                ch = model_channels * mult
                if ds in attention_resolutions:
                    stage.append(AttentionBlock(ch, num_heads))
                self.down.append(stage)
                skips.append(ch)
            if level != len(channel_mult) - 1:
                self.down.append(_Stage([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                ds *= 2
        self.middle = _Stage(
            [
                ResBlock(ch, ch, emb_dim, dropout),
                AttentionBlock(ch, num_heads),
                ResBlock(ch, ch, emb_dim, dropout),
            ]
        )
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                stage = _Stage(
                    [ResBlock(ch + skips.pop(), model_channels * mult, emb_dim, dropout)]
                )
                ch = model_channels * mult
                if ds in attention_resolutions:
                    stage.append(AttentionBlock(ch, num_heads))
                if level and i == num_res_blocks:
                    stage.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    stage.append(nn.Conv2d(ch, ch, 3, padding=1))
                    ds //= 2
                self.up.append(stage)
        self.out = nn.Sequential(
            _norm(ch), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    def forward(
        self, x: Tensor, t: Tensor, label: Tensor | None = None, r: Tensor | None = None
    ) -> Tensor:
        emb = self.embed(broadcast_time(t, x.shape[0]), label, r)
        h = self.inp(x)
        hs = [h]
        for stage in self.down:
            h = stage(h, emb)
            hs.append(h)
        h = self.middle(h, emb)
        for stage in self.up:
            h = stage(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
