"""What every `vnet` command shares: consoles, the error exit, reading YAML files.

Output that goes to a pipe or a file is not wrapped: a console that is not
a terminal is as wide as a line needs (a flow, a trace, a table row stays
one line for grep), and headings are plain lines instead of rules that fill
the width.  Boolean flags show no value in `--help`: they take none.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.rule import Rule

__all__ = ["console", "err", "fail", "heading", "load_yaml", "out"]

PIPE_WIDTH = 100_000  # wider than any line vnet prints: nothing wraps


def console(stderr: bool = False) -> Console:
    """A console; on a pipe or a file (not a terminal) one that never wraps."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    # MAC addresses contain ":ab:"-like emoji codes
    return Console(stderr=stderr, emoji=False, highlight=False, width=None if tty else PIPE_WIDTH)


def heading(con: Console, title: str) -> None:
    """A section heading: a rule on a terminal, a plain line elsewhere (never cut)."""
    if con.is_terminal:
        con.print(Rule(title))
    else:
        con.print(f"-- {title} --", highlight=False, soft_wrap=True)


out = console()
err = console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error naming what was wrong and exit (2: bad input, 1: the system failed)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def load_yaml(file: Path, what: str = "model file") -> dict[str, Any]:
    """A YAML mapping from `file`; a syntax error exits naming FILE:LINE:COLUMN."""
    try:
        doc = yaml.safe_load(file.read_text())
    except OSError as e:
        fail(f"{file}: {e.strerror}")
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        fail(f"{where}: {getattr(e, 'problem', None) or e}")
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        fail(f"{file}: a {what} is a mapping of kinds to lists")
    return doc


def _flags_take_no_value() -> None:
    """typer's help shows a `<bool>` type beside every flag, as if it took a value."""
    try:
        from typer.core import TyperOption
    except ImportError:  # an older typer prints no type for flags
        return
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None:
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    setattr(TyperOption, "display_type_rich", display_type_rich)  # noqa: B010


_flags_take_no_value()
