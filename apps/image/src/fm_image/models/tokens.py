"""Pixels as tokens: a network over intensity-level tokens that returns per-pixel logits."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["TokenImageModel"]


class TokenImageModel(nn.Module):
    """Embed each pixel token, run an image backbone, return logits over the vocabulary.

    The backbone must map ``[B, C * embed_dim, H, W]`` to ``[B, C * vocab, H, W]`` (build it
    with ``in_channels = C * embed_dim`` and ``out_channels = C * vocab``).

    Args:
        backbone: ``MLPVelocity`` or ``UNet`` with those channel counts.
        channels: image channels ``C``.
        vocab: vocabulary size ``V`` (intensity levels, plus the mask token for a mask source).
        embed_dim: embedding width per channel.

    Shapes: ``x`` long ``[B, C, H, W]`` in ``[0, V)``, ``t`` ``[]`` or ``[B]``, ``label`` ``[B]``
    -> logits ``[B, C, H, W, V]``.
    """

    def __init__(self, backbone: nn.Module, channels: int, vocab: int, embed_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.channels = channels
        self.vocab = vocab
        self.token = nn.Embedding(vocab, embed_dim)

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        e = self.token(x)  # [B, C, H, W, E]
        e = e.permute(0, 1, 4, 2, 3).reshape(b, -1, h, w)
        out = self.backbone(e, t, label)  # [B, C * V, H, W]
        return out.reshape(b, c, self.vocab, h, w).permute(0, 1, 3, 4, 2)
