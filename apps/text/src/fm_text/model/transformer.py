r"""A small diffusion transformer: adaLN-Zero time conditioning, rotary positions, SDPA attention.

The flow model sees $x_t$ and $t$ and returns posterior logits $p_{1|t}(\cdot \mid x_t)$ at every
position (bidirectional attention). The autoregressive baseline is the same body with a causal mask
and $t$ fixed at 0 (its adaLN modulation is then a learned constant), trained on next-token targets;
it samples with a KV cache.

Block diffusion (``block_size > 0``; Arriola et al., "Block Diffusion", ICLR 2025): the sequence
is cut into blocks of ``block_size`` tokens, and each block is a masked diffusion conditioned on
the clean blocks before it. Training runs one pass over ``[x_t ; x_1]`` (``forward(..., clean=x_1)``,
both halves at the same rotary positions) under ``block_attention_mask``; the model is time-free
(a mask source needs no $t$), its convolution stays inside a block, and sampling decodes one block
at a time against a KV cache of the clean prefix (``forward(..., cache=..., commit=...)``).
The convolution of a token of block $b$ reads its own block and the clean positions before it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PRESETS", "KVCache", "ModelConfig", "TextTransformer", "block_attention_mask"]

#: Sizes by name. ``tiny`` was sized by measured optimiser steps per second on 2 CPU cores (see
#: benchmarks/RESULTS.md): steps matter more than width there. ``small`` is a GPU size.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"dim": 128, "depth": 4, "heads": 4},
    "small": {"dim": 512, "depth": 8, "heads": 8},
}


@dataclass
class ModelConfig:
    """Shape of a ``TextTransformer``.

    Attributes:
        vocab_size: ids of the tokenizer, special tokens included.
        context: longest sequence (rotary tables are built for it).
        dim: width; ``dim / heads`` must be even (rotary pairs).
        depth: number of blocks.
        heads: attention heads.
        causal: causal mask (the autoregressive baseline).
        dropout: dropout on attention weights and residual branches while training.
        mlp_ratio: hidden width of the MLP over ``dim``.
        conv_kernel: width of the depthwise convolution over positions in each block (0: none);
            centred in the flow model, causal (left only) in the autoregressive one; in block
            diffusion a token reads its own block and the clean positions before it.
        block_size: block diffusion's block length (0: the whole sequence is one diffusion);
            ``context`` must be a multiple of it, and ``causal`` must be off.
    """

    vocab_size: int
    context: int
    dim: int = 128
    depth: int = 4
    heads: int = 4
    causal: bool = False
    dropout: float = 0.0
    mlp_ratio: int = 4
    conv_kernel: int = 5
    block_size: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "dim", "depth", "heads", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(
                f"dim ({self.dim}) must be a multiple of heads ({self.heads}) with an even head size"
            )
        if isinstance(self.conv_kernel, bool) or not isinstance(self.conv_kernel, int):
            raise ValueError(f"conv_kernel must be an int, got {self.conv_kernel!r}")
        if self.conv_kernel < 0 or (
            self.conv_kernel and not self.causal and self.conv_kernel % 2 == 0
        ):
            raise ValueError(
                f"conv_kernel must be 0 or a positive odd int (centred), got {self.conv_kernel}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        bs = self.block_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 0:
            raise ValueError(f"block_size must be a non-negative int, got {bs!r}")
        if bs and (self.causal or self.context % bs):
            raise ValueError(
                f"block_size ({bs}) needs a bidirectional model and a context that is a multiple "
                f"of it, got causal={self.causal}, context={self.context}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """Keys and values of past positions for incremental decoding.

    Args:
        config: the model's config.
        batch: batch size.
        device: device of the buffers.
        dtype: dtype of the buffers.
    """

    def __init__(
        self, config: ModelConfig, batch: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        hd = config.dim // config.heads
        shape = (config.depth, batch, config.heads, config.context, hd)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        # The last conv_kernel - 1 inputs of each block's causal convolution (zeros: left padding).
        width = max(config.conv_kernel - 1, 0)
        self.conv = torch.zeros(config.depth, batch, width, config.dim, device=device, dtype=dtype)
        self.length = 0


def block_attention_mask(length: int, block_size: int, device=None) -> Tensor:
    """Block diffusion's attention mask over ``[x_t ; x_1]``: bool ``[2L, 2L]``, ``True`` = attends.

    A noised token of block $b$ sees the noised tokens of block $b$ and the clean tokens of
    blocks $< b$; a clean token of block $b$ sees the clean tokens of blocks $\\le b$.

    Example:
        >>> block_attention_mask(4, 2).int()
        tensor([[1, 1, 0, 0, 0, 0, 0, 0],
                [1, 1, 0, 0, 0, 0, 0, 0],
                [0, 0, 1, 1, 1, 1, 0, 0],
                [0, 0, 1, 1, 1, 1, 0, 0],
                [0, 0, 0, 0, 1, 1, 0, 0],
                [0, 0, 0, 0, 1, 1, 0, 0],
                [0, 0, 0, 0, 1, 1, 1, 1],
                [0, 0, 0, 0, 1, 1, 1, 1]], dtype=torch.int32)
    """
    if block_size < 1 or length % block_size:
        raise ValueError(f"length ({length}) must be a multiple of block_size ({block_size})")
    block = torch.arange(length, device=device) // block_size
    same = block.unsqueeze(1) == block.unsqueeze(0)
    before = block.unsqueeze(1) > block.unsqueeze(0)
    upto = same | before
    none = torch.zeros_like(same)
    return torch.cat((torch.cat((same, before), 1), torch.cat((none, upto), 1)), 0)


def _rotary_tables(context: int, head_dim: int) -> tuple[Tensor, Tensor]:
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(context, dtype=torch.float64), inv)
    return angles.cos().float(), angles.sin().float()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of ``x`` ``[B, H, L, hd]`` with tables ``[L, hd/2]`` (half-split pairs)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class _Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.qkv = nn.Linear(config.dim, 3 * config.dim, bias=False)
        self.out = nn.Linear(config.dim, config.dim, bias=False)
        self.causal = config.causal
        self.dropout = config.dropout

    def forward(
        self,
        x: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache | None,
        layer: int,
        mask: Tensor | None = None,
    ) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        causal = self.causal
        if cache is not None:
            start = cache.length
            cache.k[layer, :, :, start : start + n] = k
            cache.v[layer, :, :, start : start + n] = v
            k = cache.k[layer, :, :, : start + n]
            v = cache.v[layer, :, :, : start + n]
            # A single new query attends to every cached key; a prompt prefill starts at 0.
            causal = causal and n > 1
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and mask is None, dropout_p=p
        )
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class _LocalConv(nn.Module):
    """Depthwise convolution over positions, zero-initialised (its residual branch starts at 0).

    A cheap local mixer: with it the flow model learns local structure in far fewer steps than
    with attention alone (the issue's calibration: a bound of 88 instead of 485 in 10 minutes).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.kernel, self.causal = config.conv_kernel, config.causal
        self.block = config.block_size
        self.weight = nn.Parameter(torch.zeros(config.dim, 1, config.conv_kernel))

    def forward(
        self,
        h: Tensor,
        cache: KVCache | None,
        layer: int,
        commit: int | None = None,
        halves: bool = False,
    ) -> Tensor:
        """The convolution of ``h`` ``[B, L, D]`` over positions (not added to ``h``).

        Block diffusion: a token of block $b$ reads its own block and the clean positions before
        the block (never a later block). ``halves``: ``h`` is ``[noised ; clean]`` (training);
        with a cache, ``h`` is whole blocks whose first ``commit`` positions are clean and join
        the cache's last clean inputs (``cache.conv``).
        """
        if self.block:
            return self._blockwise(h, cache, layer, commit, halves)
        x = h.transpose(1, 2)  # [B, D, L]
        if self.causal:
            if cache is not None:
                past = cache.conv[layer].transpose(1, 2)
                x = torch.cat((past, x), dim=-1)
                cache.conv[layer] = x[..., x.shape[-1] - (self.kernel - 1) :].transpose(1, 2)
            else:
                x = F.pad(x, (self.kernel - 1, 0))
            y = F.conv1d(x, self.weight, groups=h.shape[-1])
        else:
            y = F.conv1d(x, self.weight, padding=self.kernel // 2, groups=h.shape[-1])
        return y.transpose(1, 2)

    def _conv_blocks(self, seg: Tensor, left: Tensor) -> Tensor:
        """Blocks ``seg`` ``[B, N, bs, D]`` with the clean inputs before each ``left``
        ``[B, N, r, D]``, zero after the block: the centred convolution ``[B, N, bs, D]``."""
        b, nb, bs, d = seg.shape
        x = torch.cat((left, seg, torch.zeros_like(left)), dim=2).reshape(b * nb, -1, d)
        y = F.conv1d(x.transpose(1, 2), self.weight, groups=d)
        return y.transpose(1, 2).reshape(b, nb, bs, d)

    def _left(self, clean: Tensor) -> Tensor:
        """The ``r`` positions of ``clean`` ``[B, L, D]`` before each block: ``[B, L/bs, r, D]``."""
        r, bs = self.kernel // 2, self.block
        padded = F.pad(clean, (0, 0, r, 0))
        idx = torch.arange(0, clean.shape[1], bs, device=clean.device).unsqueeze(1)
        return padded[:, idx + torch.arange(r, device=clean.device)]

    def _blockwise(self, h, cache, layer, commit, halves) -> Tensor:
        b, n, d = h.shape
        bs, r = self.block, self.kernel // 2
        if r == 0:  # width 1: a per-position scale
            return h * self.weight[:, 0, 0]
        if halves:
            noised, clean = h[:, : n // 2], h[:, n // 2 :]
            left = self._left(clean)
            parts = [self._conv_blocks(x.reshape(b, -1, bs, d), left) for x in (noised, clean)]
            return torch.cat(parts, dim=1).reshape(b, n, d)
        if cache is None:  # a sequence of clean blocks
            return self._conv_blocks(h.reshape(b, -1, bs, d), self._left(h)).reshape(b, n, d)
        running = cache.conv[layer][:, cache.conv.shape[2] - r :]  # last clean inputs [B, r, D]
        commit = n if commit is None else commit
        out = []
        for lo in range(0, n, bs):
            seg = h[:, lo : lo + bs]
            out.append(self._conv_blocks(seg.unsqueeze(1), running.unsqueeze(1)).squeeze(1))
            if lo < commit:
                running = torch.cat((running, seg), dim=1)[:, -r:]
        if commit:
            cache.conv[layer][:, cache.conv.shape[2] - r :] = running
        return torch.cat(out, dim=1)


class _Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False)
        self.attn = _Attention(config)
        self.mlp = nn.Sequential(
            nn.Linear(d, config.mlp_ratio * d), nn.GELU(), nn.Linear(config.mlp_ratio * d, d)
        )
        self.ada = nn.Linear(d, 6 * d)
        self.drop = nn.Dropout(config.dropout)
        self.conv = _LocalConv(config) if config.conv_kernel else None
        self.norm0 = nn.LayerNorm(d, elementwise_affine=False)

    def forward(
        self,
        x: Tensor,
        c: Tensor,
        cos: Tensor,
        sin: Tensor,
        cache: KVCache | None,
        layer: int,
        mask: Tensor | None = None,
        commit: int | None = None,
        halves: bool = False,
    ) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).unsqueeze(1).chunk(6, dim=-1)
        if self.conv is not None:  # its own residual branch: a gradient from the first step
            x = x + self.conv(self.norm0(x), cache, layer, commit, halves)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self.drop(self.attn(h, cos, sin, cache, layer, mask))
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.drop(self.mlp(h))


class TextTransformer(nn.Module):
    r"""Token embedding, ``depth`` adaLN-Zero blocks, adaLN final norm and a linear head.

    Args:
        config: a ``ModelConfig``.

    Example:
        >>> net = TextTransformer(ModelConfig(vocab_size=300, context=16, dim=32, depth=1, heads=2))
        >>> net(torch.randint(0, 300, (2, 16)), torch.rand(2)).shape
        torch.Size([2, 16, 300])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.embed = nn.Embedding(config.vocab_size, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d), nn.SiLU())
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_ada = nn.Linear(d, 2 * d)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        cos, sin = _rotary_tables(config.context, d // config.heads)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init (normal, std 0.02) and zero adaLN modulations (adaLN-Zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada.weight)
            nn.init.zeros_(block.ada.bias)
        nn.init.zeros_(self.final_ada.weight)
        nn.init.zeros_(self.final_ada.bias)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def _time_embedding(self, t: Tensor) -> Tensor:
        half = self.config.dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
        )
        angles = 1000.0 * t.float().unsqueeze(-1) * freqs
        return self.time_mlp(torch.cat((angles.cos(), angles.sin()), dim=-1))

    def forward(
        self,
        x: Tensor,
        t: Tensor | None = None,
        cache: KVCache | None = None,
        *,
        return_hidden: bool = False,
        clean: Tensor | None = None,
        commit: int | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Logits at every position.

        Args:
            x: token ids, long ``[B, L]`` with ``L <= context`` (minus cached positions).
            t: times ``[B]`` in $[0, 1]$ (flow model); ``None`` means 0 (the autoregressive model).
                Block diffusion models ignore it (they are time-free).
            cache: a ``KVCache`` to read and extend (causal models, incremental decoding; block
                diffusion: the clean prefix).
            return_hidden: return the final hidden states ``[B, L, dim]`` that ``head`` maps to
                the logits, for a loss fused with the output projection (the logits never exist).
            clean: block diffusion training: the clean sequence ``x_1`` ``[B, L]`` next to the
                noised ``x`` (one pass over ``[x ; clean]`` under ``block_attention_mask``); the
                output is that of the noised half.
            commit: with a cache: how many of the ``L`` new positions join the cache (default
                all); the keys and values of the others are written past its end and are
                overwritten by the next call (block diffusion reads a block without keeping it).
            mask: with a cache: bool attention mask ``[L, cached + L]`` (``True`` = attends).

        Returns:
            Logits ``[B, L, vocab_size]`` (hidden states ``[B, L, dim]`` with ``return_hidden``).
        """
        b, n = x.shape
        start = cache.length if cache is not None else 0
        if start + n > self.config.context:
            raise ValueError(
                f"sequence of {start + n} tokens exceeds the model context {self.config.context}"
            )
        if t is None or self.config.block_size:
            t = torch.zeros(b, device=x.device)
        c = self._time_embedding(t)
        cos, sin = self.rope_cos[start : start + n], self.rope_sin[start : start + n]
        if clean is not None:
            if cache is not None or not self.config.block_size or clean.shape != x.shape:
                raise ValueError(
                    "clean: block diffusion training takes a clean sequence of the shape of x, "
                    "without a cache, on a model with block_size > 0"
                )
            mask = block_attention_mask(n, self.config.block_size, x.device)
            x = torch.cat((x, clean), dim=1)
            cos, sin = cos.repeat(2, 1), sin.repeat(2, 1)
        h = self.embed(x)
        for i, block in enumerate(self.blocks):
            h = block(h, c, cos, sin, cache, i, mask, commit, clean is not None)
        if cache is not None:
            cache.length += n if commit is None else commit
        if clean is not None:
            h = h[:, :n]
        shift, scale = self.final_ada(c).unsqueeze(1).chunk(2, dim=-1)
        hidden = self.norm(h) * (1 + scale) + shift
        return hidden if return_hidden else self.head(hidden)
