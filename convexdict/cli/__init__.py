"""The ``convexdict`` command line: one module per sub-command.

Each sub-command module exposes ``register(subparsers)`` (adds its parser and sets
``func``). Errors the user can fix (bad files, bad values) become one line on stderr and
exit code 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("certify", "train", "compare", "polish", "demo", "sweep", "census", "verify")


def field_table(title: str, rows: list[tuple[str, str]]):
    """A two-column (field, value) :class:`rich.table.Table` without a header."""
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for field, value in rows:
        table.add_row(field, value)
    return table


class CLIError(Exception):
    """An error in the user's input: printed as one line, exit code 2."""


# Errors caused by the user's input (loaders convert theirs to ValueError naming the file
# or argument; these OSErrors are about the user's own paths). Anything else is a bug and
# keeps its traceback.
USER_ERRORS = (CLIError, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
               PermissionError, FileExistsError)


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` for every option that has a real default (not None/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.required:
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:  # every --help shows the defaults
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"convexdict: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="convexdict",
        description="Certified global optima and SGD comparisons for ReLU sparse autoencoders.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"convexdict.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"convexdict.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except USER_ERRORS as exc:  # the user's input, not a bug: one line, exit 2
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"convexdict {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"convexdict {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
