from pathlib import Path

import pytest

from fm_text.data import load_corpus, split_documents


def test_pydoc_is_embedded_and_split_by_document():
    docs = load_corpus("pydoc")
    assert len(docs) > 50 and all(d.text for d in docs)
    train, val = split_documents(docs, 0.1)
    names_t, names_v = {d.name for d in train}, {d.name for d in val}
    assert not names_t & names_v and len(names_t | names_v) == len(docs)
    share = sum(len(d.text) for d in val) / sum(len(d.text) for d in docs)
    assert 0.08 < share < 0.2
    # Deterministic and independent of the listing order.
    again = split_documents(list(reversed(docs)), 0.1)[1]
    assert {d.name for d in again} == names_v


def test_pystdlib_reads_sources_without_tests_or_site_packages():
    docs = load_corpus("pystdlib")
    names = [d.name for d in docs]
    assert any(n.endswith("/json/decoder.py") or n == "pystdlib:json/decoder.py" for n in names)
    assert not any("site-packages" in n or "/test/" in n for n in names)


def test_local_folder_and_single_file(tmp_path: Path):
    (tmp_path / "a.txt").write_text("alpha\nbeta\n")
    (tmp_path / "b.md").write_text("gamma\n")
    (tmp_path / "skip.bin").write_bytes(b"\x00\xff")
    assert [d.name for d in load_corpus(str(tmp_path))] == ["a.txt", "b.md"]
    train, val = split_documents(load_corpus(str(tmp_path / "a.txt")), 0.5)
    assert train[0].text == "alpha\n" and val[0].text == "beta\n"


@pytest.mark.parametrize("kind", ["missing", "empty_folder", "empty_file", "binary_file"])
def test_bad_corpus_names_the_path(tmp_path: Path, kind: str):
    path = tmp_path / "x"
    if kind == "empty_folder":
        path.mkdir()
    elif kind == "empty_file":
        path.write_text("  \n")
    elif kind == "binary_file":
        path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match=str(path)):
        load_corpus(str(path))
