"""A run directory: preparing its tokenizer and data, and loading a trained run back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fm_text.config import TrainConfig, load_config, run_directory
from fm_text.data import (
    TextTokenizer,
    TokenStream,
    build_token_stream,
    load_corpus,
    load_tokenizer,
    split_documents,
    train_tokenizer,
)
from fm_text.model import TextTransformer

__all__ = ["RunData", "TrainedRun", "best_dir", "load_run", "prepare_data"]


def best_dir(run_dir: str | Path) -> Path:
    """Where the best-validation weights live: ``RUN_DIR/best`` (a checkpoint folder of its own)."""
    return run_directory(run_dir).best_path


@dataclass
class RunData:
    """Tokenizer and token streams of a run."""

    tokenizer: TextTokenizer
    train: TokenStream
    val: TokenStream


def prepare_data(
    config: TrainConfig, run_dir: str | Path, cache_dir: str | Path | None, *, write: bool
) -> RunData:
    """Load the corpus, get the tokenizer (the run's, a given file, or trained) and the token caches.

    Args:
        config: the run's configuration.
        run_dir: the run folder.
        cache_dir: token cache folder (``RUN_DIR/cache`` when ``None``).
        write: save ``tokenizer.json`` into the run if it is not there (rank 0 only).
    """
    docs = load_corpus(config.data)
    train_docs, val_docs = split_documents(docs, config.val_fraction)
    run_tok = Path(run_dir) / "tokenizer.json"
    if run_tok.is_file():
        tokenizer = load_tokenizer(run_tok)
    elif config.tokenizer is not None:
        tokenizer = load_tokenizer(config.tokenizer)
    else:
        tokenizer = train_tokenizer((d.text for d in train_docs), config.vocab_size)
    if write and not run_tok.is_file():
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        tokenizer.save(run_tok)
    cache = Path(cache_dir) if cache_dir is not None else Path(run_dir) / "cache"
    train = build_token_stream(train_docs, tokenizer, cache, "train")
    val = build_token_stream(val_docs, tokenizer, cache, "val")
    if val.num_chunks(config.context) < 1:
        raise ValueError(
            f"data: the validation split holds {len(val)} tokens, fewer than one sequence of "
            f"--context {config.context}; raise --val-fraction or lower --context"
        )
    return RunData(tokenizer=tokenizer, train=train, val=val)


@dataclass
class TrainedRun:
    """A trained run loaded for sampling or evaluation (EMA weights, eval mode)."""

    run_dir: Path
    config: TrainConfig
    tokenizer: TextTokenizer
    net: TextTransformer
    step: int
    checkpoint: str


def load_run(
    run_dir: str | Path, *, checkpoint: str = "best", device: str | torch.device = "cpu"
) -> TrainedRun:
    """Load ``run_dir``'s EMA weights: its best-validation copy, or its latest checkpoint.

    Args:
        run_dir: a folder written by ``fm-text train``.
        checkpoint: ``"best"`` (falls back to ``"latest"`` when the run has no best copy yet) or
            ``"latest"``.
        device: where to put the model.

    Raises:
        ValueError: a bad ``checkpoint``; ``RunError`` (a ``ValueError``): not a run, or no
            checkpoint in it.
    """
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"--checkpoint must be best or latest, got {checkpoint!r}")
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    tok_path = run_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise ValueError(f"run: {run_dir} has no tokenizer.json (training never started?)")
    tokenizer = load_tokenizer(tok_path)
    net = TextTransformer(config.model_config(tokenizer.vocab_size))
    step, checkpoint = run_directory(run_dir).load_weights(net, checkpoint=checkpoint, ema=True)
    net.to(device).eval()
    return TrainedRun(run_dir, config, tokenizer, net, step, checkpoint)
