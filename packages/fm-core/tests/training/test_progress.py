import pytest

from fm_core.training import progress_bar


def test_bar_counts_from_initial(capsys):
    bar = progress_bar(10, initial=4, desc="train")
    bar.update(2)
    assert bar.n == 6
    bar.close()
    assert "train" in capsys.readouterr().err


def test_disabled_bar_prints_nothing(capsys):
    bar = progress_bar(10, enabled=False)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err == ""


def test_negative_total_is_rejected():
    with pytest.raises(ValueError, match="total"):
        progress_bar(-1)
