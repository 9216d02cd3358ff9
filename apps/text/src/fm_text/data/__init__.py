"""Corpora, tokenizer and the memory-mapped token streams."""

from fm_text.data.corpus import BUILTIN_CORPORA, Document, load_corpus, split_documents
from fm_text.data.tokenizer import EOS, MASK, TextTokenizer, load_tokenizer, train_tokenizer
from fm_text.data.tokens import TokenStream, build_token_stream, token_dtype

__all__ = [
    "BUILTIN_CORPORA",
    "EOS",
    "MASK",
    "Document",
    "TextTokenizer",
    "TokenStream",
    "build_token_stream",
    "load_corpus",
    "load_tokenizer",
    "split_documents",
    "token_dtype",
    "train_tokenizer",
]
