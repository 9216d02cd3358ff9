import pytest

from fm_text.judge import CharNgramJudge, judge_documents


def test_judge_prefers_text_like_its_corpus():
    judge = CharNgramJudge(["the cat sat on the mat. " * 20, "a dog sat on a log. " * 20], order=4)
    assert judge.bits_per_char("the dog sat on the mat.") < judge.bits_per_char("xq zvk jjw pqq")


def test_unseen_characters_get_finite_bits():
    judge = CharNgramJudge(["abc"], order=2)
    assert 0 < judge.bits_per_char("zzz") < 10


def test_half_of_the_documents():
    names = [f"doc{i}" for i in range(400)]
    chosen = judge_documents(names)
    assert 150 < len(chosen) < 250 and chosen == judge_documents(names)


def test_bad_input():
    with pytest.raises(ValueError, match="order"):
        CharNgramJudge(["a"], order=0)
    with pytest.raises(ValueError, match="empty"):
        CharNgramJudge(["a"]).bits_per_char("")
