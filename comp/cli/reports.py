"""Report commands: report (one run) and compare (runs side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp import console, result_tables, tables
from comp.cli.context import workspace


def report(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run name.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the report (default: runs/RUN/report/).")
    ] = None,
) -> None:
    """Per-class table, per-fold spread and figures of a run, in one self-contained report.html."""
    from comp.evaluation import direction
    from comp.report import write_run_report

    ws = workspace(ctx)
    rep = write_run_report(ws, run, out)
    result_tables.run_report(run, rep, direction(rep.metric))
    tables.seed_spread(ws, run)
    for note in rep.notes:
        console.warn(note)
    console.echo(f"wrote {ws.relative(rep.html)} ({', '.join(p.name for p in rep.figures.values())} embedded)")


def compare(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Runs to compare (two or more).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the tables and figures (default: reports/compare-RUNS/)."),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="OOF correlation: pearson | spearman.")] = "pearson",
    metric: Annotated[
        str | None, typer.Option("--metric", help="CV of every run in this metric (default: comp.yaml's).")
    ] = None,
) -> None:
    """Per-class F1 (tuned) side by side, CV in one metric, and the OOF correlation between runs (low blends well)."""
    from comp.evaluation import direction
    from comp.report import write_comparison

    ws = workspace(ctx)
    result = write_comparison(ws, runs, out, method, metric)
    result_tables.comparison(result, method, direction(result.metric))
    console.echo(f"wrote {ws.relative(result.html)} and {', '.join(p.name for p in result.figures.values())}")
