r"""A judge that neither model is: a character n-gram model (Witten-Bell interpolation).

Fitted on half of a corpus' documents, chosen by a hash of their names (``judge_documents``), it
scores text in bits per character: the lower, the more the text reads like the corpus. Its
characters come straight from the text (no tokenizer), so it judges the flow model and the
autoregressive baseline alike.

$$P_n(c \mid h) = \frac{C(h c) + N_{1+}(h\,\cdot)\,P_{n-1}(c \mid h')}{C(h) + N_{1+}(h\,\cdot)},$$

$h'$ the context $h$ without its first character, $N_{1+}(h\,\cdot)$ the number of distinct
characters seen after $h$, and $P_0$ add-one over the characters seen plus one unknown.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, defaultdict

__all__ = ["CharNgramJudge", "judge_documents"]


def judge_documents(names: list[str]) -> set[str]:
    """The half of the document ``names`` the judge is fitted on (by a hash of each name)."""
    return {n for n in names if hashlib.sha256(f"judge:{n}".encode()).digest()[0] < 128}


class CharNgramJudge:
    """Character n-gram model of order ``order`` (default 6: five characters of context).

    Args:
        texts: the training texts.
        order: n.

    Example:
        >>> judge = CharNgramJudge(["abcabcabc"], order=3)
        >>> judge.bits_per_char("abcabc") < judge.bits_per_char("cbacba")
        True
    """

    def __init__(self, texts: list[str], order: int = 6) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be a positive int, got {order!r}")
        self.order = order
        self.counts: list[dict[str, Counter]] = [defaultdict(Counter) for _ in range(order)]
        unigram: Counter = Counter()
        for text in texts:
            unigram.update(text)
            for n in range(1, order):
                table = self.counts[n]
                for i in range(n, len(text)):
                    table[text[i - n : i]][text[i]] += 1
        self.unigram = unigram
        self.total = sum(unigram.values())
        self.alphabet = len(unigram) + 1  # + one unknown character
        self._totals = [{h: sum(c.values()) for h, c in table.items()} for table in self.counts]

    def _prob(self, context: str, char: str) -> float:
        p = (self.unigram.get(char, 0) + 1) / (self.total + self.alphabet)
        for n in range(1, min(self.order, len(context) + 1)):
            h = context[len(context) - n :]
            seen = self.counts[n].get(h)
            if seen is None:
                break
            types, total = len(seen), self._totals[n][h]
            p = (seen.get(char, 0) + types * p) / (total + types)
        return p

    def bits_per_char(self, text: str) -> float:
        """Bits per character of ``text`` (its first character scored with no context)."""
        if not text:
            raise ValueError("text must not be empty")
        bits = 0.0
        for i, c in enumerate(text):
            bits -= math.log2(self._prob(text[max(0, i - self.order + 1) : i], c))
        return bits / len(text)

    def score(self, texts: list[str]) -> float:
        """Bits per character over all ``texts`` (weighted by length)."""
        bits = sum(self.bits_per_char(t) * len(t) for t in texts if t)
        chars = sum(len(t) for t in texts)
        if chars == 0:
            raise ValueError("texts must hold at least one character")
        return bits / chars
