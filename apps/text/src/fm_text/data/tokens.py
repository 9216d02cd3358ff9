"""Documents tokenized once into a memory-mapped token stream; batches are sliced from it.

As nanoGPT's ``prepare.py``: each split is one flat array of ids (each document followed by ``EOS``)
written to ``<name>.bin`` (``uint16`` when the vocabulary fits, else ``uint32``) with a ``<name>.json``
beside it; the training loop reads it through ``np.memmap``, so a corpus larger than RAM costs
nothing. The cache is keyed by the tokenizer and the documents: a changed corpus or tokenizer
writes a new file instead of reading a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fm_core.training import write_json_atomic
from fm_text.data.corpus import Document
from fm_text.data.tokenizer import TextTokenizer

__all__ = ["TokenStream", "build_token_stream", "token_dtype"]

_ENCODE_CHUNK = 256  # documents per encode_batch call: bounds the RAM held by Python lists


def token_dtype(vocab_size: int) -> np.dtype:
    """``uint16`` for vocabularies up to 65 536 ids, else ``uint32``."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def _key(docs: list[Document], tokenizer: TextTokenizer) -> str:
    h = hashlib.sha256(tokenizer.fingerprint().encode())
    for d in docs:
        h.update(d.name.encode("utf-8") + b"\0")
        h.update(hashlib.sha256(d.text.encode("utf-8")).digest())
    return h.hexdigest()[:16]


@dataclass
class TokenStream:
    """A split as one memory-mapped stream of token ids.

    Attributes:
        tokens: ``np.memmap`` of shape ``[N]`` (``uint16``/``uint32``).
        num_bytes: UTF-8 bytes of the documents' text (``EOS`` separators counted as one byte each).
        path: the ``.bin`` file.
    """

    tokens: np.ndarray
    num_bytes: int
    path: Path

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def num_chunks(self, length: int) -> int:
        """How many disjoint sequences of ``length`` tokens the stream holds."""
        return len(self) // length

    def chunks(self, length: int, start: int = 0, stop: int | None = None) -> Tensor:
        """Disjoint sequences ``start .. stop-1`` of ``length`` tokens: long ``[n, length]``.

        The validation set: the stream cut into consecutive pieces, the tail dropped.
        """
        stop = self.num_chunks(length) if stop is None else min(stop, self.num_chunks(length))
        part = np.asarray(self.tokens[start * length : stop * length], dtype=np.int64)
        return torch.from_numpy(part.reshape(-1, length))

    def random_windows(self, batch: int, length: int, generator: torch.Generator) -> Tensor:
        """``batch`` windows of ``length`` tokens at random offsets: long ``[batch, length]``."""
        high = len(self) - length + 1
        if high < 1:
            raise ValueError(
                f"the split holds {len(self)} tokens, fewer than one sequence of {length}; "
                "use a smaller --context or a larger corpus"
            )
        offsets = torch.randint(0, high, (batch,), generator=generator).tolist()
        rows = [np.asarray(self.tokens[o : o + length], dtype=np.int64) for o in offsets]
        return torch.from_numpy(np.stack(rows))


def build_token_stream(
    docs: list[Document], tokenizer: TextTokenizer, cache_dir: str | Path, name: str
) -> TokenStream:
    """Tokenize ``docs`` into ``cache_dir/<name>-<key>.bin`` once; later calls memory-map it.

    Args:
        docs: the split's documents, in order.
        tokenizer: the run's tokenizer.
        cache_dir: folder of the cache (created if missing).
        name: split name, e.g. ``"train"``.

    Returns:
        The ``TokenStream``.
    """
    if not docs:
        raise ValueError(f"data: the {name} split holds no documents")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _key(docs, tokenizer)
    bin_path = cache_dir / f"{name}-{key}.bin"
    meta_path = bin_path.with_suffix(".json")
    dtype = token_dtype(tokenizer.vocab_size)
    if not (bin_path.is_file() and meta_path.is_file()):
        tmp = bin_path.with_suffix(f".bin.tmp{os.getpid()}")
        count = 0
        with open(tmp, "wb") as f:
            for i in range(0, len(docs), _ENCODE_CHUNK):
                part = docs[i : i + _ENCODE_CHUNK]
                for ids in tokenizer.encode_batch([d.text for d in part]):
                    arr = np.asarray([*ids, tokenizer.eos_id], dtype=dtype)
                    arr.tofile(f)
                    count += arr.size
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(bin_path)
        num_bytes = sum(len(d.text.encode("utf-8")) + 1 for d in docs)
        meta = {"tokens": count, "bytes": num_bytes, "dtype": dtype.name, "documents": len(docs)}
        write_json_atomic(meta_path, meta, indent=None)
    meta = json.loads(meta_path.read_text())
    if meta["tokens"] == 0:
        raise ValueError(f"data: the {name} split tokenizes to no tokens")
    tokens = np.memmap(bin_path, dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["tokens"],))
    return TokenStream(tokens=tokens, num_bytes=int(meta["bytes"]), path=bin_path)
