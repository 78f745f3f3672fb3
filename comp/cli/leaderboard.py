"""Submission and leaderboard commands: submit, lb, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp import console, result_tables
from comp.cli.context import application, workspace


def submit(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run (or ensemble) whose test probabilities to submit.")],
    message: Annotated[
        str | None,
        typer.Option("--message", "-m", help="Submission description (default: the run and its CV)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Build, validate, write and log the file; do not upload it.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Upload even if an identical file was uploaded before.")
    ] = False,
) -> None:
    """Build the sample_submission-shaped CSV from a run, validate it, upload it and log it in the ledger."""
    from comp.submission import submit_run

    result_tables.submit_outcome(submit_run(workspace(ctx), run, message, dry_run, force))


def lb(
    ctx: typer.Context,
    wait: Annotated[bool, typer.Option("--wait", help="Poll Kaggle until the newest submission is scored.")] = False,
    top: Annotated[
        int | None, typer.Option("--top", min=1, help="Also show the leaderboard's top N and your best rank.")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Show the ledger as recorded, without asking Kaggle.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="--wait: give up after this many seconds.")
    ] = 900.0,
    interval: Annotated[float, typer.Option("--interval", min=0, help="--wait: seconds between polls.")] = 15.0,
    plot: Annotated[
        bool, typer.Option("--plot", help="Also write submissions/lb.png: honest CV against public LB.")
    ] = False,
) -> None:
    """Refresh the ledger from Kaggle and show every submission's CV next to its public and private LB."""
    from comp.ledger import lb_report

    ws = workspace(ctx)
    report = lb_report(ws, offline=offline, wait=wait, top=top, timeout=timeout, interval=interval)
    for message in report.warnings:
        console.warn(message)
    result_tables.ledger(report)
    result_tables.lb_summary(report, top, timeout)
    if plot:
        from comp.report import lb_plot, lb_points

        if lb_points(report.entries)[0]:
            console.echo(f"wrote {ws.relative(lb_plot(report.entries, ws.lb_plot))}")
        else:
            console.warn("--plot: no submission has both a CV and a public score yet; no plot written")


def evaluate(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Submission CSV to score.", exists=True, dir_okay=False)],
    answers: Annotated[
        Path,
        typer.Option(
            "--answers",
            help="Answer key CSV (sample_submission's shape, true labels).",
            exists=True,
            dir_okay=False,
        ),
    ],
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric (default: comp.yaml's, else f1_macro).")
    ] = None,
) -> None:
    """Score a submission file against an answer key: the metric plus per-class precision, recall, F1."""
    from comp.evaluate import evaluate_file

    # outside a workspace the schema is inferred from the key
    result = evaluate_file(file, answers, application(ctx).settings_if_any(), metric)
    result_tables.evaluation(f"{file.name} vs {answers.name}", result)
