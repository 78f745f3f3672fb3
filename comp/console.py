"""Printing for the CLI: tables on stdout, warnings on stderr. Library modules return data; only
commands print."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int] = ()) -> None:
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, box=None, header_style="bold")
    for i, name in enumerate(columns):
        t.add_column(name, justify="right" if i in right else "left")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out.print(t)


def echo(message: str = "") -> None:
    out.print(message, markup=False)


def warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False, style="yellow")


def fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def is_terminal() -> bool:
    return sys.stderr.isatty()
