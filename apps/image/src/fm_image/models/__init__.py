"""Image networks and their size presets."""

from __future__ import annotations

from typing import Any

from torch import nn

from fm_image.models.mlp import MLPVelocity
from fm_image.models.tokens import TokenImageModel
from fm_image.models.unet import UNet

__all__ = ["PRESETS", "MLPVelocity", "TokenImageModel", "UNet", "build_model"]

#: name -> network kind and its keyword arguments.
#: ``tiny``: the digits demo's MLP (chosen by measurement, see docs/apps/image.md).
#: ``unet-tiny``: a UNet small enough for CPU tests. ``unet-small``: 28x28 MNIST on one GPU.
#: ``cifar``: the reference flow_matching CIFAR-10 example's UNet (128 channels, 2-2-2,
#: 4 blocks per level, attention at 16x16, dropout 0.3, 1 head).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"kind": "mlp", "width": 512, "depth": 4},
    "unet-tiny": {
        "kind": "unet", "model_channels": 16, "channel_mult": (1, 2), "num_res_blocks": 1,
        "attention_resolutions": (2,), "dropout": 0.0, "num_heads": 1,
    },
    "unet-small": {
        "kind": "unet", "model_channels": 64, "channel_mult": (1, 2, 2), "num_res_blocks": 2,
        "attention_resolutions": (2,), "dropout": 0.1, "num_heads": 4,
    },
    "cifar": {
        "kind": "unet", "model_channels": 128, "channel_mult": (2, 2, 2), "num_res_blocks": 4,
        "attention_resolutions": (2,), "dropout": 0.3, "num_heads": 1,
    },
}  # fmt: skip

#: token embedding width per channel for ``--flow discrete``.
TOKEN_EMBED_DIM = 16


def build_model(
    preset: str,
    *,
    channels: int,
    image_size: tuple[int, int],
    num_classes: int,
    vocab: int | None = None,
    flow_map: bool = False,
) -> nn.Module:
    """Build the network of ``preset`` for images ``[channels, *image_size]``.

    Args:
        preset: a key of ``PRESETS``.
        channels: image channels.
        image_size: ``(H, W)``.
        num_classes: classes (0: unconditional).
        vocab: ``None`` for a continuous velocity model; the vocabulary size for a discrete one
            (then the model is a ``TokenImageModel`` returning logits ``[B, C, H, W, vocab]``).
        flow_map: a flow-map (average-velocity) network taking the end time ``r`` as well.
    """
    if preset not in PRESETS:
        raise ValueError(f"model preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    cfg = dict(PRESETS[preset])
    kind = cfg.pop("kind")
    cin, cout = channels, channels
    if vocab is not None:
        cin, cout = channels * TOKEN_EMBED_DIM, channels * vocab
    cls = MLPVelocity if kind == "mlp" else UNet
    if flow_map:
        if vocab is not None:
            raise ValueError("a flow-map network is continuous (vocab must be None)")
        cfg["flow_map"] = True
    net = cls(cin, cout, tuple(image_size), num_classes, **cfg)
    if vocab is not None:
        net = TokenImageModel(net, channels, vocab, TOKEN_EMBED_DIM)
    return net
