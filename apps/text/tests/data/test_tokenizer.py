from tokenizers import Tokenizer, models

from fm_text.data import EOS, MASK, load_corpus, load_tokenizer, train_tokenizer

TEXT = "def f(x):\n    return x ** 2  # ünïcode ✓\n"


def test_bpe_round_trip_through_tokenizer_json(tmp_path):
    docs = load_corpus("pydoc")[:20]
    tok = train_tokenizer((d.text for d in docs), 400)
    assert tok.vocab_size == 400
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    back = load_tokenizer(path)
    assert back.fingerprint() == tok.fingerprint()
    for text in (TEXT, docs[0].text):
        ids = tok.encode(text)
        assert back.encode(text) == ids
        assert back.decode(ids) == text  # byte-level: every string round-trips


def test_special_tokens_exist_and_never_come_from_text():
    tok = train_tokenizer(["hello world"] * 10, 300)
    assert tok.hf.id_to_token(tok.mask_id) == MASK and tok.hf.id_to_token(tok.eos_id) == EOS
    ids = tok.encode(f"a {MASK} b {EOS}")
    assert tok.mask_id not in ids and tok.eos_id not in ids


def test_token_bytes_count_utf8_bytes():
    tok = train_tokenizer([TEXT] * 5, 300)
    table = tok.token_bytes()
    ids = tok.encode(TEXT)
    assert sum(table[i] for i in ids) == len(TEXT.encode("utf-8"))


def test_a_local_tokenizer_gets_the_special_tokens(tmp_path):
    raw = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    path = tmp_path / "word.json"
    raw.save(str(path))
    tok = load_tokenizer(path)
    assert tok.vocab_size == 4 and {tok.mask_id, tok.eos_id} == {2, 3}
