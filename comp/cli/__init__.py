"""The `comp` command line. Each command parses its arguments, calls one library function and
prints what it returned (comp.tables, comp.result_tables). The global options reach the commands as
an Application object on ``typer.Context.obj``; this module is the only place that turns a CompError
into a message and an exit code.

The command modules hold plain functions; they are registered here, in the order `comp --help`
lists them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from comp import console
from comp.cli import data, examples, leaderboard, reports, runs, training
from comp.cli.context import Application
from comp.errors import CompError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Out-of-fold training, thresholds, ensembles and validated submissions for Kaggle NLP competitions.",
)


@app.callback()
def _global(
    ctx: typer.Context,
    workspace_dir: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="Workspace folder (default: $COMP_WORKSPACE or the nearest comp.yaml)."),
    ] = None,
) -> None:
    ctx.obj = Application(workspace_dir)


COMMANDS = (
    data.init,
    data.fetch,
    data.info,
    data.folds,
    training.train,
    training.tune,
    runs.runs,
    runs.thresholds,
    runs.ensemble,
    leaderboard.submit,
    leaderboard.lb,
    leaderboard.evaluate,
    reports.report,
    reports.compare,
    runs.predict,
    examples.demo,
)
for command in COMMANDS:
    app.command()(command)
del command


def main() -> None:
    # Typer handles usage errors (exit 2) and Ctrl-C itself; a CompError is a user mistake: one line, exit 1
    try:
        app()
    except CompError as exc:
        console.err.print(f"error: {exc}", markup=False, style="red")
        sys.exit(exc.exit_code)
    except BrokenPipeError:  # `comp runs | head`
        sys.exit(1)
    except OSError as exc:
        # a full disk or a read-only folder met outside comp's own writers (a library saving a model)
        from comp.atomic import storage_error

        console.err.print(f"error: {storage_error(exc, exc.filename or 'a file')}", markup=False, style="red")
        sys.exit(1)
