"""Printing for the CLI: tables on stdout, warnings on stderr. Library modules return data; only
commands print."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int] = ()
) -> None:
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


class TaskProgress:
    """One progress table of fanned-out tasks (task, status, where, seconds) on stderr: redrawn in place
    on a terminal, else one line per change of a task's status."""

    def __init__(self, title: str):
        self.title = title
        self._live = None
        self._seen: dict[str, str] = {}

    def _table(self, tasks) -> Table:
        t = Table(
            title=self.title, title_justify="left", show_edge=False, pad_edge=False, box=None, header_style="bold"
        )
        for name in ("task", "status", "where", "seconds"):
            t.add_column(name, justify="right" if name == "seconds" else "left")
        for task in tasks:
            t.add_row(task.key, task.status, task.where, "" if task.seconds is None else f"{task.seconds:.1f}")
        return t

    def __call__(self, tasks) -> None:
        if is_terminal():
            from rich.live import Live

            if self._live is None:
                self._live = Live(self._table(tasks), console=err, refresh_per_second=4, transient=False)
                self._live.start()
            self._live.update(self._table(tasks))
            return
        for task in tasks:
            if self._seen.get(task.key) != task.status:
                self._seen[task.key] = task.status
                seconds = "" if task.seconds is None else f" after {task.seconds:.1f}s"
                err.print(
                    f"{task.key}: {task.status}{seconds}" + (f" [{task.where}]" if task.where else ""),
                    markup=False,
                    style="dim",
                )

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
