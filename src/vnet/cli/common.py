"""What every `vnet` command shares: consoles, the error exit, reading YAML files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml
from rich.console import Console

__all__ = ["err", "fail", "load_yaml", "out"]

out = Console(emoji=False, highlight=False)  # MAC addresses contain ":ab:"-like emoji codes
err = Console(stderr=True, emoji=False)


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
