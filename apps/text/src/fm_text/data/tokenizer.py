"""Byte-level BPE with Hugging Face ``tokenizers``: trained on the training split, or loaded from a file.

Every tokenizer of the app has two special tokens: ``EOS`` ends each document (and starts an
autoregressive sequence), ``MASK`` is the source token of the masked flow. Special-token strings met
in the data are tokenized as plain text, so the data never holds the mask id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from fm_core.training import write_text_atomic

__all__ = [
    "EOS",
    "MASK",
    "TextTokenizer",
    "load_tokenizer",
    "train_tokenizer",
]

EOS = "<|endoftext|>"
MASK = "<|mask|>"


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` with the app's special tokens and the facts the app needs.

    Args:
        tokenizer: a Hugging Face tokenizer; ``EOS`` and ``MASK`` are added if missing.

    Attributes:
        vocab_size: number of ids, special tokens included.
        eos_id: id of ``EOS``.
        mask_id: id of ``MASK``.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        missing = [t for t in (EOS, MASK) if tokenizer.token_to_id(t) is None]
        if missing:
            tokenizer.add_special_tokens(missing)
        tokenizer.encode_special_tokens = True
        self.hf = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.eos_id = tokenizer.token_to_id(EOS)
        self.mask_id = tokenizer.token_to_id(MASK)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, in parallel (Rust threads)."""
        return [e.ids for e in self.hf.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens (mask, eos) are dropped."""
        return self.hf.decode(list(ids), skip_special_tokens=True)

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes each id stands for (special tokens count 1: a document separator).

        A byte-level token is a string of the 256-symbol byte alphabet, one symbol per byte, so its
        length is its byte count (decoding a lone id would turn a partial UTF-8 character into a
        3-byte replacement character).
        """
        alphabet = set(pre_tokenizers.ByteLevel.alphabet())
        out = []
        for i in range(self.vocab_size):
            tok = self.hf.id_to_token(i)
            if tok is None or tok in (EOS, MASK):
                out.append(1)
            elif set(tok) <= alphabet:
                out.append(len(tok))
            else:
                out.append(max(1, len(self.hf.decode([i]).encode("utf-8"))))
        return out

    def to_str(self) -> str:
        """The tokenizer as JSON (what ``save`` writes)."""
        return self.hf.to_str()

    def fingerprint(self) -> str:
        """A short hash of the tokenizer's JSON: two runs can share data and judges only if equal."""
        return hashlib.sha256(self.to_str().encode("utf-8")).hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Write ``tokenizer.json`` (atomically: temp file then rename)."""
        write_text_atomic(path, self.to_str())


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> TextTokenizer:
    """Train a byte-level BPE on ``texts``.

    Args:
        texts: training documents.
        vocab_size: total number of ids, the 256 byte symbols and the two special tokens included;
            at least 260.

    Returns:
        The trained ``TextTokenizer`` (its vocabulary may be smaller on a tiny corpus).
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 260:
        raise ValueError(f"vocab_size must be an int >= 260, got {vocab_size!r}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, MASK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tok)


def load_tokenizer(path: str | Path) -> TextTokenizer:
    """Load a ``tokenizer.json`` (the ``EOS``/``MASK`` tokens are added when it lacks them).

    Raises:
        ValueError: the file is missing or not a tokenizer.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"tokenizer: {path} is not a file")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise ValueError(f"tokenizer: cannot load {path}: {exc}") from None
    return TextTokenizer(tok)
