import argparse

import pytest

from fm_core.training import CLIParser, UsageError, add_hidden_alias, explicit_options, run_cli
from fm_core.training.run_dir import RunError


def _parser():
    p = CLIParser(prog="app")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--steps", type=int, default=10, help="steps")
    t.add_argument("--warmup-steps", type=int, default=0, help="warmup")
    add_hidden_alias(t, "--warmup", "warmup_steps", type=int)
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False, help="c")
    s = sub.add_parser("sample")
    s.add_argument("--steps", type=int, default=5, help="sampler steps")
    return p


def test_explicit_options_count_only_what_was_typed():
    p = _parser()
    assert explicit_options(p, ["train"]) == set()
    argv = ["train", "--steps=3", "--warmup", "2", "--no-compile"]
    assert explicit_options(p, argv) == {"steps", "warmup_steps", "compile"}
    args = p.parse_args(argv)
    assert (args.steps, args.warmup_steps, args.compile) == (3, 2, False)
    assert p.parse_args(["train"]).warmup_steps == 0  # the hidden alias leaves the default alone


def test_hidden_alias_is_not_in_help():
    train = _parser()._subparsers._group_actions[0].choices["train"]
    text = train.format_help()
    assert "--warmup-steps" in text and "--warmup " not in text and "(default: 0)" in text


@pytest.mark.parametrize(
    "argv", [["train", "--bogus"], ["train", "--st", "3"], ["nope"], ["train", "--steps", "x"]]
)
def test_usage_errors_are_one_line(argv):
    with pytest.raises(UsageError) as e:
        _parser().parse_args(argv)
    assert "\n" not in str(e.value) and str(e.value).startswith("app")


def test_run_cli_turns_bad_input_into_one_line_and_exit_2(capsys):
    def bad(exc):
        def command():
            raise exc

        return command

    for exc, text in [
        (ValueError("--lr must be\n positive"), "app: error: --lr must be positive"),
        (RunError("run is odd"), "app: error: run is odd"),
        (FileNotFoundError("gone"), "app: error: gone"),
        (UsageError("app train: error: unrecognized arguments: --x"), "app train: error"),
    ]:
        assert run_cli("app", bad(exc)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(text), err
    assert run_cli("app", lambda: None) == 0
    assert run_cli("app", lambda: 3) == 3
    with pytest.raises(RuntimeError):  # a bug is not bad input: it keeps its traceback
        run_cli("app", bad(RuntimeError("bug")))
