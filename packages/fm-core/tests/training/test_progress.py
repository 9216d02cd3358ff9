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


def test_a_stream_that_is_not_a_terminal_gets_a_handful_of_whole_lines():
    import io

    out = io.StringIO()
    bar = progress_bar(1000, initial=100, desc="train", file=out, lines=10)
    for i in range(900):
        bar.update(1)
        bar.set_postfix(loss=f"{101 + i}")  # each line shows the figures of its own step
    bar.close()
    bar.close()  # closing twice writes nothing more
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    # updates at 200, 300, ..., 900 (100 was done before) and the final line at 1000
    assert len(lines) == 9, lines
    assert lines[0].startswith("train:  20%") and "200/1000" in lines[0] and "loss=200" in lines[0]
    assert "1000/1000" in lines[-1] and "loss=1000" in lines[-1]


def test_a_due_line_without_postfix_goes_out_at_the_next_update():
    import io

    out = io.StringIO()
    bar = progress_bar(10, file=out, lines=2)
    bar.update(5)
    assert out.getvalue() == ""
    bar.update(1)
    assert "5/10" in out.getvalue()


def test_a_terminal_gets_the_live_tqdm_bar():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    bar = progress_bar(10, desc="train", file=out)
    bar.update(10)
    bar.close()
    assert "\r" in out.getvalue() and "10/10" in out.getvalue()


def test_bad_lines_is_rejected():
    with pytest.raises(ValueError, match="lines"):
        progress_bar(10, lines=0)
