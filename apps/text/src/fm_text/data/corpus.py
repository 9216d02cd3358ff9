"""Corpora that need no download: CPython's pydoc topics, its standard library, or local files.

A corpus is a list of ``Document(name, text)``; the train/validation split is made by document,
from a hash of each name, so it does not depend on the order files are listed in and a document
never straddles the two splits.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BUILTIN_CORPORA", "Document", "load_corpus", "split_documents"]

BUILTIN_CORPORA = ("pydoc", "pystdlib")

#: Suffixes read from a local folder (anything else, e.g. binaries, is skipped).
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".json", ".csv", ".html", ".tex", ".c", ".h")


@dataclass(frozen=True)
class Document:
    """One document of a corpus: a stable name (used for the split) and its text."""

    name: str
    text: str


def _pydoc() -> list[Document]:
    from pydoc_data.topics import topics

    return [Document(f"pydoc:{k}", topics[k]) for k in sorted(topics)]


def _is_stdlib_source(rel: Path) -> bool:
    parts = rel.parts
    if "site-packages" in parts or "dist-packages" in parts or "__pycache__" in parts:
        return False
    # Test suites are large, repetitive and full of deliberately odd code; idlelib/turtledemo too.
    skip = {"test", "tests", "idle_test", "idlelib", "turtledemo", "lib2to3"}
    return not any(p in skip for p in parts[:-1])


def _pystdlib() -> list[Document]:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if not _is_stdlib_source(rel):
            continue
        text = _read(path)
        if text and text.strip():
            docs.append(Document(f"pystdlib:{rel.as_posix()}", text))
    if not docs:
        raise ValueError(f"data: no Python sources found under the stdlib folder {root}")
    return docs


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def load_corpus(spec: str) -> list[Document]:
    """Load a corpus.

    Args:
        spec: ``"pydoc"``, ``"pystdlib"``, a text file, or a folder (every readable UTF-8 text file
            below it with a suffix in ``TEXT_SUFFIXES``, one document per file).

    Returns:
        The documents, sorted by name.

    Raises:
        ValueError: the path does not exist, or holds no readable, non-empty text.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"data must be 'pydoc', 'pystdlib' or a local file/folder, got {spec!r}")
    if spec == "pydoc":
        return _pydoc()
    if spec == "pystdlib":
        return _pystdlib()
    path = Path(spec).expanduser()
    if not path.exists():
        raise ValueError(
            f"data: {spec!r} is neither 'pydoc', 'pystdlib' nor an existing file or folder"
        )
    if path.is_file():
        text = _read(path)
        if text is None:
            raise ValueError(f"data: cannot read {path} as UTF-8 text")
        if not text.strip():
            raise ValueError(f"data: {path} is empty")
        return [Document(path.name, text)]
    docs = []
    for file in sorted(path.rglob("*")):
        if file.is_file() and file.suffix.lower() in TEXT_SUFFIXES and os.access(file, os.R_OK):
            text = _read(file)
            if text and text.strip():
                docs.append(Document(file.relative_to(path).as_posix(), text))
    if not docs:
        raise ValueError(
            f"data: the folder {path} holds no readable non-empty text files "
            f"(suffixes {', '.join(TEXT_SUFFIXES)})"
        )
    return docs


def _unit_hash(name: str) -> float:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_documents(
    docs: list[Document], val_fraction: float = 0.1
) -> tuple[list[Document], list[Document]]:
    """Split documents into train and validation by a hash of their names.

    Documents are taken in the order of a hash of their names until the validation side holds
    ``val_fraction`` of the characters. A single document is cut into two parts instead (its last ``val_fraction`` of lines is the
    validation part). With several documents, at least one goes to each side.

    Args:
        docs: the corpus.
        val_fraction: share of documents for validation, in ``(0, 1)``.

    Returns:
        ``(train, val)``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if not docs:
        raise ValueError("data: the corpus holds no documents")
    if len(docs) == 1:
        lines = docs[0].text.splitlines(keepends=True)
        if len(lines) < 2:
            raise ValueError(f"data: {docs[0].name} is too short to split (one line)")
        cut = min(len(lines) - 1, max(1, round(len(lines) * (1.0 - val_fraction))))
        name = docs[0].name
        return (
            [Document(f"{name}[train]", "".join(lines[:cut]))],
            [Document(f"{name}[val]", "".join(lines[cut:]))],
        )
    # Documents in hash order go to validation until they hold ``val_fraction`` of the characters:
    # counting documents instead gave pydoc 5 short topics (1 % of its text).
    scored = sorted(docs, key=lambda d: _unit_hash(d.name))
    target = val_fraction * sum(len(d.text) for d in docs)
    val_names: set[str] = set()
    size = 0
    for doc in scored[:-1]:
        if size >= target:
            break
        val_names.add(doc.name)
        size += len(doc.text)
    train = [d for d in docs if d.name not in val_names]
    val = [d for d in docs if d.name in val_names]
    return train, val
