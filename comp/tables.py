"""What the commands print about data, runs and studies: each function takes a library result and
prints its tables and summary lines through comp.console. The leaderboard, evaluation and report
tables are in comp.result_tables."""

from __future__ import annotations

from comp import console


def metric_label(metric: str | None, greater_is_better: bool | None) -> str:
    """The metric with its direction: an arrow up when higher is better, down when lower is."""
    if metric is None:
        return "-"
    return f"{metric} {'↑' if greater_is_better else '↓' if greater_is_better is False else '?'}"


def param(value) -> str:
    """A hyperparameter value in a table cell: 4 significant digits for a float."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def echo_dim(message: str) -> None:
    """A progress line on stderr, dimmed, so stdout keeps only the results."""
    console.err.print(message, markup=False, style="dim")


def schema(settings) -> None:
    classes = ", ".join(map(str, settings.classes or []))
    console.table(
        "schema (comp.yaml)",
        ["field", "value"],
        [
            ("competition", settings.competition),
            ("task", settings.task),
            ("id_column", settings.id_column),
            ("text_columns", ", ".join(settings.text_columns or [])),
            ("label_columns", ", ".join(settings.label_columns or [])),
            ("classes", classes if len(classes) < 300 else classes[:300] + " ..."),
            ("metric", settings.metric),
            ("submission_format", settings.submission_format),
            ("folds / seed", f"{settings.folds} / {settings.seed}"),
        ],
    )


def data_description(data) -> None:
    """comp.info.describe's result: row counts, class prevalence, text lengths, warnings."""
    console.echo(f"\nrows: train {data.train_rows}, test {data.test_rows}\n")
    console.table(
        "classes (train)",
        ["class", "rows", "prevalence"],
        [(c.name, c.count, f"{c.prevalence:.2%}") for c in data.classes],
        right=(1, 2),
    )
    console.echo()
    rows = []
    for split in ("train", "test"):
        ch, wd = data.chars[split], data.words[split]
        rows.append(
            (
                split,
                f"{ch.mean:.0f}",
                f"{ch.median:.0f}",
                f"{ch.p95:.0f}",
                ch.max,
                f"{wd.mean:.1f}",
                f"{wd.median:.0f}",
                f"{wd.p95:.0f}",
                wd.max,
            )
        )
    console.table(
        "text length",
        ["split", "chars mean", "median", "p95", "max", "words mean", "median", "p95", "max"],
        rows,
        right=range(1, 9),
    )
    for message in data.warnings:
        console.warn(message)


def fold_balance(balance) -> None:
    console.table(
        None,
        ["fold", "rows", "max prevalence deviation", "class", "classes absent"],
        [(b.fold, b.rows, f"{b.max_deviation * 100:.2f} pp", b.worst_class, b.classes_missing) for b in balance],
        right=(0, 1, 2, 4),
    )


def scores(scores, title: str | None = None) -> None:
    """A run's CV by fold, titled with its metric and direction."""
    rows = [
        (
            r["fold"],
            r["rows"],
            console.fmt(r["at_0.5"]),
            console.fmt(r["tuned"]),
            console.fmt(r["honest"]),
            "-" if r.get("seconds") is None else f"{r['seconds']:.1f}",
        )
        for r in scores.per_fold
    ]
    rows.append(
        (
            "all",
            sum(r["rows"] for r in scores.per_fold),
            console.fmt(scores.at_05),
            console.fmt(scores.tuned),
            console.fmt(scores.honest),
            "",
        )
    )
    label = f"{scores.metric} ({scores.direction})"
    console.table(
        f"{title}: {label} by fold" if title else f"{label} by fold",
        ["fold", "rows", "at 0.5", "tuned", "honest", "seconds"],
        rows,
        right=range(0, 6),
    )
    console.echo(
        f"tuned flatters the CV by {scores.optimism + 0.0:+.4f} {scores.metric} over honest "
        "(fitting on the OOF and scoring on it)"
    )


def seed_spread(ws, run: str) -> None:
    """The line for a run of several seeds: each seed's honest CV, the class that moves most."""
    import json

    try:
        spread = json.loads(ws.run(run).scores.read_text(encoding="utf-8")).get("seeds")
    except (OSError, ValueError):
        return
    if spread:
        from comp.seeds import describe_spread

        console.echo(describe_spread(spread, spread.get("metric", "")))


def train_result(ws, result) -> None:
    for note in result.notes:
        console.warn(note)
    if result.skipped:
        console.echo(f"skipped finished fold(s) {', '.join(map(str, result.skipped))} (--force retrains them)")
    for label, owner in sorted(result.busy.items()):
        console.echo(f"skipped {label}: another process is training it ({owner}); --wait waits for it")
    if result.scores is None:
        console.echo(
            f"run {result.run}: folds {', '.join(map(str, result.pending))} still to train; the run's files "
            "are assembled when every fold is done"
        )
        return
    scores(result.scores, f"run {result.run}")
    if result.optimistic:
        console.warn(f"run {result.run}: cv optimistic: {result.optimistic}")
    seed_spread(ws, result.run)
    console.echo(
        f"wrote {ws.relative(ws.run(result.run).dir)}/ (oof.parquet, test.parquet, scores.json, thresholds.json)"
    )


def failed_tasks(outcome) -> None:
    """Each failed fanned-out task and the last lines of its log, on stderr."""
    for task in outcome.failed:
        console.err.print(
            f"{task.key} failed ({task.status}); last lines of {task.log_name}:", markup=False, style="red"
        )
        console.err.print(task.tail, markup=False)


def study(ws, name: str, view) -> None:
    """comp.tune.show.show_study's view: one row per trial, the best trial and the files written."""
    metric = view.identity["metric"]
    subset = ",".join(map(str, view.identity["folds_subset"]))
    keys = list(view.identity["space"])
    console.table(
        f"study {name}: honest {metric_label(metric, view.identity['direction'] == 'maximize')} on folds {subset} "
        f"of {view.identity['n_folds']}",
        ["trial", "state", *keys, "honest", "tuned", "seconds", "note"],
        [
            (
                r["number"],
                r["state"],
                *(param(r["params"].get(k)) for k in keys),
                console.fmt(r["honest"]),
                console.fmt(r["tuned"]),
                "-" if r["seconds"] is None else f"{r['seconds']:.1f}",
                r["note"],
            )
            for r in view.rows
        ],
        right=(0, *range(2 + len(keys), 5 + len(keys))),
    )
    console.echo(f"trial N is run {name}/trial-N (a retry trains in its original's run)")
    for note in view.notes:
        console.echo(note)
    if view.best is not None:
        console.echo(
            f"best: trial {view.best['number']} ({view.best['run']}), honest {metric} {view.best['value']:.4f}: "
            + ", ".join(f"{k}={param(v)}" for k, v in view.best["params"].items())
        )
        console.echo(f"wrote {ws.relative(view.best_config)} (comp train it on every fold, or pass --retrain-best)")
    figures = ", ".join(ws.relative(p) for p in view.figures)
    console.echo(f"wrote {ws.relative(view.trials_csv)}" + (f", {figures}" if figures else ""))


def run_list(summaries, main: str, metric: str | None, sort: str | None) -> None:
    """comp.runs.list_runs's summaries (already sorted) and the warnings about metrics that differ."""
    by_metric: dict[str, list[str]] = {}
    for s in summaries:
        by_metric.setdefault(s.metric or "-", []).append(s.name)
    console.table(
        None,
        ["run", "model", "folds", "metric", "at 0.5", "tuned", "honest", "seconds", "status"],
        [
            (
                s.name,
                s.model,
                s.folds,
                metric_label(s.metric, s.greater_is_better),
                console.fmt(s.at_05),
                console.fmt(s.tuned),
                console.fmt(s.honest),
                "-" if s.seconds is None else f"{s.seconds:.0f}",
                s.status,
            )
            for s in summaries
        ],
        right=(4, 5, 6, 7),
    )
    missing = [s.name for s in summaries if s.status == "done" and s.tuned is None]
    if metric is not None and missing:
        console.warn(
            f"no {metric} score recorded for {', '.join(missing)}; add one with `comp thresholds RUN --metric {metric}`"
        )
    others = {m: names for m, names in by_metric.items() if m not in (main, "-")}
    if others:
        listed = "; ".join(f"{', '.join(names)} ({m})" for m, names in others.items())
        console.warn(
            f"runs scored with another metric than {main}: {listed}. Their CV is not comparable with the "
            f"others'{' and they are sorted apart' if sort else ''}; show one metric with "
            f"`comp runs --metric {main}` or re-score with `comp thresholds RUN --metric {main}`"
        )


def threshold_gain(run: str, table, tuned_for: str) -> None:
    """Per-class F1 at 0.5 and at the tuned thresholds, from comp.report.class_table's frame."""
    console.table(
        f"run {run}: per-class F1 (thresholds tuned for {tuned_for})",
        ["class", "support", "threshold", "F1 at 0.5", "F1 tuned"],
        [
            (r["class"], int(r["support"]), f"{r['threshold']:.3f}", f"{r['f1_0.5']:.4f}", f"{r['f1_tuned']:.4f}")
            for _, r in table.iterrows()
        ],
        right=(1, 2, 3, 4),
    )


def ensemble(name: str, method: str, result, best: str, value: float) -> None:
    """comp.ensemble.make_ensemble's result: the members' weights and honest CV, the blend by fold, and
    the gain over the best member (``best``, its honest CV ``value``)."""
    s = result.scores
    label = f"{s.metric} ({s.direction})"
    console.table(
        f"ensemble {name} ({method}): members in {label}",
        ["run", "weight", "honest CV"],
        [(r, f"{w:.3f}", console.fmt(result.members[r].get("honest"))) for r, w in result.weights.items()],
        right=(1, 2),
    )
    scores(s, f"ensemble {name}")
    gain = (s.honest - value) * (1.0 if s.greater_is_better else -1.0)
    console.echo(
        f"honest CV {s.honest:.4f} vs best member {best} {value:.4f} {s.metric}: "
        f"{'better' if gain > 0 else 'worse' if gain < 0 else 'no change'} by {abs(gain):.4f}"
    )
