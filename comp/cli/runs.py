"""Commands on finished runs: runs (the list), thresholds, ensemble, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp import console, tables
from comp.cli.context import workspace
from comp.errors import CompError


def runs(
    ctx: typer.Context,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Show every run's CV in this metric (where recorded).")
    ] = None,
    sort: Annotated[
        str | None, typer.Option("--sort", help="Best first by at_0.5 | tuned | honest (within one metric).")
    ] = None,
) -> None:
    """List every run: model, folds, metric (↑ higher is better, ↓ lower), CV at 0.5 / tuned / honest, time."""
    from comp.evaluation import ESTIMATES
    from comp.metrics import get_metric
    from comp.runs import list_runs

    ws = workspace(ctx)
    if metric is not None:
        get_metric(metric)
    if sort is not None and sort not in ESTIMATES:
        raise CompError(f"--sort {sort} is not one of {', '.join(ESTIMATES)}")
    summaries = list_runs(ws, metric)
    if not summaries:
        console.echo("no runs yet: `comp train configs/tfidf.yaml`")
        return
    main = metric or ws.load_settings().metric
    if sort is not None:
        key = {"at_0.5": "at_05"}.get(sort, sort)

        def rank(s):
            value = getattr(s, key)
            # the shown metric first; within a metric best first, whichever way it points; unscored last
            return (
                s.metric != main,
                s.metric or "",
                value is None,
                0.0 if value is None else (-value if s.greater_is_better is not False else value),
            )

        summaries = sorted(summaries, key=rank)
    tables.run_list(summaries, main, metric, sort)


def thresholds(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run name.")],
    metric: Annotated[str | None, typer.Option("--metric", help="Metric to tune for (default: comp.yaml's).")] = None,
    offsets: Annotated[
        bool, typer.Option("--offsets", help="Multiclass: tune per-class offsets on the probabilities.")
    ] = False,
) -> None:
    """Re-fit a run's decision thresholds on its OOF for a metric and show what they gain, honestly
    estimated. A probability metric (log_loss, roc_auc_macro) is scored and recorded next to the
    run's thresholds, which it leaves as they are."""
    from comp.report import class_table
    from comp.runs import rescore_run

    ws = workspace(ctx)
    scores, data, comp = rescore_run(ws, run, metric, offsets)
    settings = comp.settings
    if scores.tuned_for is not None and settings.task != "multiclass":
        # min_labels as the thresholds were fitted with it, so the F1 columns agree with scores.json
        table = class_table(comp.Y, data.oof, data.classes, settings.task, scores.thresholds, settings.min_labels)
        tables.threshold_gain(run, table, scores.tuned_for)
    console.echo(f"decision: {scores.method}")
    tables.scores(scores, f"run {run}")
    sign = 1.0 if scores.greater_is_better else -1.0
    if scores.tuned_for is not None and sign * (scores.honest - scores.at_05) < 0:
        console.warn(
            f"tuned thresholds score worse than 0.5/argmax on held-out folds (honest {scores.honest:.4f} vs "
            f"{scores.at_05:.4f} {scores.metric}): they overfit the OOF"
            + (f"; consider `comp thresholds {run}` without --offsets" if offsets else "")
        )
    if scores.tuned_for is None and data.scores.get("metric") not in (None, scores.metric):
        console.echo(
            f"{scores.metric} scores probabilities: the decision thresholds stay tuned for "
            f"{data.scores.get('metric')}; recorded under other_metrics in {ws.relative(ws.run(run).scores)}"
        )
    else:
        console.echo(f"wrote {ws.relative(ws.run(run).thresholds)} and {ws.relative(ws.run(run).scores)}")


def ensemble(
    ctx: typer.Context,
    runs: Annotated[list[str], typer.Argument(help="Runs to blend (trained on the same folds).")],
    name: Annotated[str, typer.Option("--name", help="Name of the ensemble run.")],
    method: Annotated[
        str,
        typer.Option(
            "--method", help="mean | rank | weighted (Caruana, on the metric) | stack (a meta-model per class)."
        ),
    ] = "mean",
    metric: Annotated[str | None, typer.Option("--metric", help="Metric to optimise (default: comp.yaml's).")] = None,
    meta_model: Annotated[
        str, typer.Option("--meta-model", help="stack: logistic | lightgbm (pip install 'comp[stack]').")
    ] = "logistic",
    meta_c: Annotated[
        float, typer.Option("--meta-c", help="stack, logistic: inverse L2 strength on standardised logits.")
    ] = 1.0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run of that name.")] = False,
) -> None:
    """Blend runs into a new run (oof, test, scores, thresholds, weights), honestly scored."""
    from comp.ensemble import best_member, make_ensemble

    ws = workspace(ctx)
    result = make_ensemble(ws, runs, name, method, metric, force, meta_model, meta_c)
    best, value = best_member(result.members, result.scores.metric)
    tables.ensemble(name, method, result, best, value)


def predict(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A run trained with save_models: true.")],
    test: Annotated[
        Path, typer.Option("--test", help="CSV with comp.yaml's id and text columns.", exists=True, dir_okay=False)
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output file (default: runs/RUN/predict-<file>.parquet).")
    ] = None,
) -> None:
    """Predict a new file with a run's saved fold models (their probabilities averaged)."""
    from comp.atomic import write_csv, write_parquet
    from comp.predict import predict_run

    ws = workspace(ctx)
    target = out or ws.run(run).dir / f"predict-{test.stem}.parquet"
    writers = {".csv": write_csv, ".parquet": write_parquet, ".pq": write_parquet}
    if target.suffix.lower() not in writers:
        raise CompError(f"--out {target}: comp predict writes .csv or .parquet files; name the file x.csv or x.parquet")
    if target.is_dir():
        raise CompError(f"--out {target} is a folder; name a file (x.csv or x.parquet)")
    frame = predict_run(ws, run, test, log=tables.echo_dim)
    writers[target.suffix.lower()](target, frame)
    console.echo(f"wrote {ws.relative(target)}: {len(frame)} rows, {frame.shape[1] - 1} probability columns")
