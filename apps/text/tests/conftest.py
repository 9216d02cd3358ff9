"""Shared fixtures: a small local corpus and tiny trained runs (a few steps, a 32-wide model)."""

from __future__ import annotations

from pathlib import Path
from pydoc_data.topics import topics

import pytest

from fm_text.cli import main

#: A model and data small enough for a test to train in about a second.
TINY = [
    "--dim", "32", "--depth", "1", "--heads", "2", "--context", "16", "--vocab-size", "300",
    "--batch-size", "4", "--eval-sequences", "8", "--eval-time-samples", "2", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A folder of 12 pydoc topics as text files (about 60 kB)."""
    folder = tmp_path_factory.mktemp("corpus")
    for name in sorted(topics)[:12]:
        (folder / f"{name}.txt").write_text(topics[name], encoding="utf-8")
    return folder


def train_run(out: Path, corpus: Path, *extra: str) -> Path:
    code = main(["train", "--data", str(corpus), "--out", str(out), *TINY, *extra])
    assert code == 0
    return out


@pytest.fixture(scope="session")
def tiny_options() -> list[str]:
    """Command-line options of the tiny model and data."""
    return list(TINY)


@pytest.fixture(scope="session")
def train_tiny(corpus):
    """``train_tiny(out, *options)`` trains a tiny run on the test corpus through the CLI."""
    return lambda out, *extra: train_run(out, corpus, *extra)


@pytest.fixture(scope="session")
def flow_run(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("runs") / "flow"
    return train_run(out, corpus, "--steps", "4", "--eval-every", "2")


@pytest.fixture(scope="session")
def ar_run(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("runs") / "ar"
    return train_run(out, corpus, "--model", "ar", "--steps", "4", "--eval-every", "2")
