"""Command-line plumbing the apps share: one-line errors (exit 2), explicit options, aliases.

Every bad input of an app's command line ends with ONE line on stderr, ``PROG: error: ...``, and
exit code 2, with no traceback: argparse's own errors (through :class:`CLIParser`) and the
``ValueError`` / ``TypeError`` / ``OSError`` (``RunError`` and ``CheckpointError`` are
``ValueError``\\ s) that validation raises before any work (through :func:`run_cli`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable

__all__ = ["CLIParser", "UsageError", "add_hidden_alias", "explicit_options", "run_cli"]


class UsageError(Exception):
    """A command-line usage error, already worded as one line."""


class CLIParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that shows defaults in ``--help`` and raises one-line usage errors.

    Abbreviated long options are refused (``allow_abbrev=False``): a run resumed with ``--st 9``
    must not silently mean ``--steps``, and :func:`explicit_options` matches names exactly.
    Subparsers made with ``add_subparsers`` are ``CLIParser``\\ s too.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def add_subparsers(self, **kwargs):  # type: ignore[override]
        kwargs.setdefault("parser_class", CLIParser)
        return super().add_subparsers(**kwargs)

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {' '.join(message.split())}")


def add_hidden_alias(parser: argparse.ArgumentParser, alias: str, dest: str, **kwargs) -> None:
    """Accept ``alias`` (an old spelling) for option ``dest``, without showing it in ``--help``.

    Args:
        parser: the (sub)parser holding the option.
        alias: the old flag, e.g. ``"--warmup"``.
        dest: the option's destination, e.g. ``"warmup_steps"``.
        kwargs: ``type``, ``choices``, ``action`` … as for the option itself.
    """
    parser.add_argument(
        alias, dest=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs
    )


def _option_actions(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, argparse.Action]:
    actions = dict(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            command = next((tok for tok in argv if tok in action.choices), None)
            if command is not None:
                actions.update(_option_actions(action.choices[command], argv))
    return actions


def explicit_options(parser: argparse.ArgumentParser, argv: Iterable[str]) -> set[str]:
    """Destinations of the options given explicitly in ``argv`` (defaults not counted).

    ``--lr 1e-3``, ``--lr=1e-3``, ``--no-compile`` and hidden aliases all count; the options of the
    subcommand named in ``argv`` are included. A resumed run keeps its saved value for every option
    not in this set (``RunDirectory.merge``).

    Example:
        >>> p = CLIParser(prog="x"); _ = p.add_argument("--lr", type=float, default=1.0)
        >>> sorted(explicit_options(p, ["--lr=0.5"])), sorted(explicit_options(p, []))
        (['lr'], [])
    """
    argv = list(argv)
    actions = _option_actions(parser, argv)
    given = set()
    for tok in argv:
        if tok == "--":
            break
        if tok.startswith("-"):
            action = actions.get(tok.split("=", 1)[0])
            if action is not None:
                given.add(action.dest)
    return given


def run_cli(prog: str, command: Callable[[], int | None]) -> int:
    """Run ``command`` and turn bad input into one line on stderr and exit code 2.

    Args:
        prog: the program's name, the prefix of the error line.
        command: parses and runs the command line; returns the exit code (``None``: 0).

    Returns:
        The exit code: the command's, 2 for a usage error or a ``ValueError`` / ``TypeError`` /
        ``OSError``, 130 on Ctrl-C.
    """
    try:
        code = command()
    except UsageError as e:
        print(str(e), file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as e:
        line = " ".join(str(e).split()) or type(e).__name__
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if code is None else code
