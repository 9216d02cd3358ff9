import numpy as np
import torch

from fm_text.data import build_token_stream, load_corpus, train_tokenizer


def test_memmap_cache_reads_back_the_tokenized_text(tmp_path):
    docs = load_corpus("pydoc")[:6]
    tok = train_tokenizer((d.text for d in docs), 500)
    stream = build_token_stream(docs, tok, tmp_path, "train")
    assert isinstance(stream.tokens, np.memmap) and stream.tokens.dtype == np.uint16
    expected = []
    for d in docs:
        expected += [*tok.encode(d.text), tok.eos_id]
    assert stream.tokens.tolist() == expected
    assert stream.num_bytes == sum(len(d.text.encode()) + 1 for d in docs)
    # A second call maps the same file instead of rewriting it.
    mtime = stream.path.stat().st_mtime_ns
    again = build_token_stream(docs, tok, tmp_path, "train")
    assert again.path == stream.path and again.path.stat().st_mtime_ns == mtime
    # Another corpus gets another file.
    other = build_token_stream(docs[:3], tok, tmp_path, "train")
    assert other.path != stream.path


def test_batches_are_slices_of_the_stream(tmp_path):
    docs = load_corpus("pydoc")[:3]
    tok = train_tokenizer((d.text for d in docs), 300)
    stream = build_token_stream(docs, tok, tmp_path, "val")
    flat = torch.tensor(stream.tokens.astype(np.int64))
    chunks = stream.chunks(16)
    assert chunks.shape == (len(flat) // 16, 16)
    assert torch.equal(chunks.flatten(), flat[: chunks.numel()])
    windows = stream.random_windows(5, 16, torch.Generator().manual_seed(0))
    for row in windows:
        starts = [i for i in range(len(flat) - 15) if torch.equal(flat[i : i + 16], row)]
        assert starts
