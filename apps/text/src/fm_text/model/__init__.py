"""The diffusion transformer and its autoregressive twin."""

from fm_text.model.transformer import PRESETS, KVCache, ModelConfig, TextTransformer

__all__ = ["PRESETS", "KVCache", "ModelConfig", "TextTransformer"]
