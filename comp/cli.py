"""The `comp` command line. Each command parses its arguments, calls one library function and
prints a short summary. This is the only place that turns a CompError into a message and an exit code.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from comp import console
from comp.errors import CompError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Out-of-fold training, thresholds, ensembles and validated submissions for Kaggle NLP competitions.",
)


@dataclass
class State:
    workspace: Path | None = None


STATE = State()


def workspace():
    from comp.workspace import Workspace

    return Workspace.find(STATE.workspace)


@app.callback()
def _global(
    workspace_dir: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="Workspace folder (default: $COMP_WORKSPACE or the nearest comp.yaml)."),
    ] = None,
) -> None:
    STATE.workspace = workspace_dir


# ---- workspace and data ------------------------------------------------------------------------


@app.command()
def init(
    slug: Annotated[str, typer.Argument(help="Kaggle competition slug, e.g. emotion-detection-spring-2024.")],
    directory: Annotated[Path | None, typer.Argument(help="Folder to create (default: ./SLUG).")] = None,
) -> None:
    """Create a workspace: comp.yaml, configs/ with example model configs, data/, submissions/."""
    from importlib.resources import files

    from comp.workspace import init_workspace

    examples = {p.name: p.read_text(encoding="utf-8") for p in files("comp").joinpath("configs").iterdir() if p.name.endswith(".yaml")}
    ws = init_workspace(slug, directory or Path(slug), examples)
    console.echo(f"created workspace {ws.root}")
    console.echo(f"  comp.yaml, configs/ ({len(examples)} example configs), data/, submissions/")
    console.echo(f"next: cd {directory or slug} && comp fetch")


@app.command()
def fetch(
    slug: Annotated[str | None, typer.Argument(help="Competition slug (default: comp.yaml's).")] = None,
    from_: Annotated[Path | None, typer.Option("--from", help="A local folder or zip instead of Kaggle.")] = None,
    hf: Annotated[str | None, typer.Option("--hf", help="A Hugging Face dataset NAME[:CONFIG] (cached when offline).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace competition files that differ from data/'s.")] = False,
) -> None:
    """Download the competition files into data/, validate them and infer the schema into comp.yaml."""
    from comp import fetch as fetching

    ws = workspace()
    if from_ and hf:
        raise CompError("pass either --from or --hf, not both")
    if from_:
        result = fetching.fetch_local(ws, from_, force)
    elif hf:
        result = fetching.fetch_hf(ws, hf, force)
    else:
        result = fetching.fetch_kaggle(ws, slug, force)
    for note in result.notes:
        console.echo(note)
    console.echo(("data unchanged: " if result.unchanged else "fetched: ") + ", ".join(result.files))
    if result.filled:
        console.echo(f"inferred into comp.yaml: {', '.join(result.filled)}")
    _print_schema(ws.load_settings())


def _print_schema(settings) -> None:
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


@app.command()
def info() -> None:
    """Schema, row counts, class prevalence, text lengths and data warnings."""
    from comp.data import load_competition
    from comp.info import describe

    ws = workspace()
    settings = ws.load_settings()
    comp = load_competition(ws, settings)
    data = describe(comp, settings.folds)
    _print_schema(settings)
    console.echo(f"\nrows: train {data.train_rows}, test {data.test_rows}\n")
    console.table(
        "classes (train)", ["class", "rows", "prevalence"],
        [(c.name, c.count, f"{c.prevalence:.2%}") for c in data.classes], right=(1, 2),
    )
    console.echo()
    rows = []
    for split in ("train", "test"):
        ch, wd = data.chars[split], data.words[split]
        rows.append((split, f"{ch.mean:.0f}", f"{ch.median:.0f}", f"{ch.p95:.0f}", ch.max,
                     f"{wd.mean:.1f}", f"{wd.median:.0f}", f"{wd.p95:.0f}", wd.max))
    console.table("text length", ["split", "chars mean", "median", "p95", "max", "words mean", "median", "p95", "max"],
                  rows, right=range(1, 9))
    for message in data.warnings:
        console.warn(message)


@app.command()
def folds(
    n_folds: Annotated[int | None, typer.Option("--folds", "-k", help="Number of folds (default: comp.yaml's).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: comp.yaml's).")] = None,
    group_column: Annotated[str | None, typer.Option("--group-column", help="Keep rows of a group in one fold.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rewrite the fold file if it exists.")] = False,
) -> None:
    """Write data/folds-k{K}-s{S}.csv (id, fold), stratified by label, and print the fold balance."""
    from comp.data import load_competition
    from comp.folds import class_warnings, fold_balance, load_folds, make_folds, write_folds
    from comp.workspace import check_folds

    ws = workspace()
    settings = ws.load_settings()
    n_folds = check_folds(n_folds, settings)
    seed = settings.seed if seed is None else seed
    group_column = group_column or settings.group_column
    comp = load_competition(ws, settings)
    path = ws.folds_csv(n_folds, seed, group_column)
    if path.exists() and not force:
        assignment = load_folds(path, comp, n_folds)
        console.echo(f"{ws.relative(path)} exists (use --force to rewrite it)")
    else:
        frame = make_folds(comp, n_folds, seed, group_column)
        write_folds(path, frame)
        assignment = frame["fold"].to_numpy()
        console.echo(f"wrote {ws.relative(path)}")
    balance = fold_balance(comp.Y, assignment, comp.classes, settings.task)
    console.table(
        None, ["fold", "rows", "max prevalence deviation", "class", "classes absent"],
        [(b.fold, b.rows, f"{b.max_deviation * 100:.2f} pp", b.worst_class, b.classes_missing) for b in balance],
        right=(0, 1, 2, 4),
    )
    for message in class_warnings(comp.Y, comp.classes, n_folds, settings.task):
        console.warn(message)
    if group_column and group_column != settings.group_column:
        console.warn(f"comp train uses comp.yaml's group_column ({settings.group_column}); set group_column: "
                     f"{group_column} there so that runs train on these grouped folds")


# ---- training and thresholds -------------------------------------------------------------------


def _metric_label(metric: str | None, higher: bool | None) -> str:
    """A CV's metric and its direction: ``f1_macro ↑`` (higher is better), ``log_loss ↓``."""
    if not metric:
        return "-"
    return metric if higher is None else f"{metric} {'↑' if higher else '↓'}"


def _print_scores(scores, title: str | None = None) -> None:
    rows = [(r["fold"], r["rows"], console.fmt(r["at_0.5"]), console.fmt(r["tuned"]), console.fmt(r["honest"]),
             "-" if r.get("seconds") is None else f"{r['seconds']:.1f}") for r in scores.per_fold]
    rows.append(("all", sum(r["rows"] for r in scores.per_fold), console.fmt(scores.at_05), console.fmt(scores.tuned),
                 console.fmt(scores.honest), ""))
    console.table(title or f"{scores.metric} by fold", ["fold", "rows", "at 0.5", "tuned", "honest", "seconds"], rows,
                  right=range(0, 6))
    console.echo(f"tuned - honest = {scores.optimism:+.4f} (how much tuning thresholds on the OOF flatters the CV)")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Model config YAML; its file stem is the run name.", exists=True, dir_okay=False)],
    n_folds: Annotated[int | None, typer.Option("--folds", "-k", help="Number of folds (default: comp.yaml's).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Fold seed (default: comp.yaml's).")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Train this fold only (spread folds over machines).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value: --set C=2 --set a.b=v.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name (default: the config's file stem).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Retrain finished folds and replace the run's config.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for folds another process is training instead of skipping them.")] = False,
) -> None:
    """Train out-of-fold on the shared folds: OOF + test probabilities, scores and thresholds."""
    from comp.runs import is_main_process
    from comp.train import train as run_training

    ws = workspace()
    echo = (lambda m: console.err.print(m, markup=False, style="dim")) if is_main_process() else None
    result = run_training(ws, config, n_folds=n_folds, seed=seed, only_fold=fold, overrides=set_, name=name,
                          force=force, wait=wait, echo=echo)
    if not is_main_process():
        return
    for note in result.notes:
        console.warn(note)
    if result.skipped:
        console.echo(f"skipped finished fold(s) {', '.join(map(str, result.skipped))} (--force retrains them)")
    for k, owner in sorted(result.busy.items()):
        console.echo(f"skipped fold {k}: another process is training it ({owner}); --wait waits for it")
    if result.scores is None:
        console.echo(f"run {result.run}: folds {', '.join(map(str, result.pending))} still to train; the run's files "
                     "are assembled when every fold is done")
        return
    _print_scores(result.scores, f"run {result.run}: {result.scores.metric} by fold")
    console.echo(f"wrote {ws.relative(ws.run(result.run).dir)}/ (oof.parquet, test.parquet, scores.json, thresholds.json)")


@app.command()
def runs() -> None:
    """List every run: model, folds, CV at 0.5 / tuned / honest, training time."""
    from comp.runs import list_runs

    ws = workspace()
    summaries = list_runs(ws)
    if not summaries:
        console.echo("no runs yet: `comp train configs/tfidf.yaml`")
        return
    console.table(None, ["run", "model", "folds", "at 0.5", "tuned", "honest", "seconds", "status"],
                  [(s.name, s.model, s.folds, console.fmt(s.at_05), console.fmt(s.tuned), console.fmt(s.honest),
                    "-" if s.seconds is None else f"{s.seconds:.0f}", s.status) for s in summaries], right=(3, 4, 5, 6))


@app.command()
def thresholds(
    run: Annotated[str, typer.Argument(help="Run name.")],
    metric: Annotated[str | None, typer.Option("--metric", help="Metric to tune for (default: comp.yaml's).")] = None,
    offsets: Annotated[bool, typer.Option("--offsets", help="Multiclass: tune per-class offsets on the probabilities.")] = False,
) -> None:
    """Re-fit per-class thresholds on a run's OOF and show what they gain, honestly estimated."""
    import numpy as np

    from comp.metrics import per_class
    from comp.runs import rescore_run
    from comp.thresholds import apply_thresholds

    ws = workspace()
    scores, data, comp = rescore_run(ws, run, metric, offsets)
    settings = comp.settings
    if settings.task != "multiclass" and not np.isnan(scores.thresholds).all():
        half = per_class(comp.Y, apply_thresholds(data.oof, np.full(len(data.classes), 0.5), settings.task))
        tuned = per_class(comp.Y, apply_thresholds(data.oof, scores.thresholds, settings.task))
        console.table(f"run {run}: per-class F1", ["class", "support", "threshold", "F1 at 0.5", "F1 tuned"],
                      [(c, int(half["support"][j]), f"{scores.thresholds[j]:.3f}", f"{half['f1'][j]:.4f}",
                        f"{tuned['f1'][j]:.4f}") for j, c in enumerate(data.classes)], right=(1, 2, 3, 4))
    _print_scores(scores, f"run {run}: {scores.metric} ({scores.method})")
    if scores.honest < scores.at_05:
        console.warn(f"tuned thresholds score lower than 0.5/argmax on held-out folds ({scores.honest:.4f} < "
                     f"{scores.at_05:.4f}): they overfit the OOF; consider `comp thresholds {run}` without --offsets")
    console.echo(f"wrote {ws.relative(ws.run(run).thresholds)}")


@app.command()
def ensemble(
    runs: Annotated[list[str], typer.Argument(help="Runs to blend (trained on the same folds).")],
    name: Annotated[str, typer.Option("--name", help="Name of the ensemble run.")],
    method: Annotated[str, typer.Option("--method", help="mean | rank | weighted (Caruana, on the OOF metric).")] = "mean",
    metric: Annotated[str | None, typer.Option("--metric", help="Metric to optimise (default: comp.yaml's).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run of that name.")] = False,
) -> None:
    """Blend runs into a new run (oof, test, scores, thresholds, weights), honestly scored."""
    from comp.ensemble import make_ensemble

    ws = workspace()
    result = make_ensemble(ws, runs, name, method, metric, force)
    console.table(f"ensemble {name} ({method})", ["run", "weight", "honest CV"],
                  [(r, f"{w:.3f}", console.fmt(result.members[r].get("honest"))) for r, w in result.weights.items()],
                  right=(1, 2))
    _print_scores(result.scores, f"ensemble {name}: {result.scores.metric} by fold")
    best = max((m.get("honest") or float("-inf")) for m in result.members.values())
    console.echo(f"honest CV {result.scores.honest:.4f} vs best member {best:.4f} ({result.scores.honest - best:+.4f})")


# ---- submissions and the leaderboard -----------------------------------------------------------


@app.command()
def submit(
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

    ws = workspace()
    outcome = submit_run(ws, run, message, dry_run, force)
    entry = outcome.entry
    console.echo(f"wrote {entry.file} ({outcome.rows} rows, sha256 {entry.sha256[:12]}), ledger #{entry.id}")
    if outcome.duplicate_of is not None:
        console.warn(
            f"identical to #{outcome.duplicate_of.id} ({outcome.duplicate_of.file}), uploaded before"
        )
    if not outcome.uploaded:
        console.echo("dry run: not uploaded")
        return
    left = "" if outcome.left_today is None else f"; {outcome.left_today} submission(s) left today"
    console.echo(f'uploaded: ref {entry.ref}, "{entry.message}"{left}')
    console.echo("next: comp lb --wait")


@app.command()
def lb(
    wait: Annotated[
        bool, typer.Option("--wait", help="Poll Kaggle until the newest submission is scored.")
    ] = False,
    top: Annotated[
        int | None, typer.Option("--top", min=1, help="Also show the leaderboard's top N and your best rank.")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Show the ledger as recorded, without asking Kaggle.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0, help="--wait: give up after this many seconds.")
    ] = 900.0,
    interval: Annotated[
        float, typer.Option("--interval", min=0, help="--wait: seconds between polls.")
    ] = 15.0,
    plot: Annotated[
        bool, typer.Option("--plot", help="Also write submissions/lb.png: honest CV against public LB.")
    ] = False,
) -> None:
    """Refresh the ledger from Kaggle and show every submission's CV next to its public and private LB."""
    from comp.ledger import lb_report

    ws = workspace()
    report = lb_report(ws, offline=offline, wait=wait, top=top, timeout=timeout, interval=interval)
    for message in report.warnings:
        console.warn(message)
    if not report.entries:
        console.echo("no submissions in the ledger yet: `comp submit RUN`")
    else:
        console.table(
            "CV (tuned, honest) vs leaderboard (public, private); LB-CV = public - honest; times UTC",
            ["#", "time", "run", "CV metric", "tuned", "honest", "public", "LB-CV", "private", "status"],
            [
                (
                    e.id,
                    e.time[:16].replace("T", " "),
                    e.run,
                    _metric_label(e.metric, e.higher_is_better),
                    console.fmt(e.cv_tuned),
                    console.fmt(e.cv_honest),
                    console.fmt(e.public_score, 5),
                    "-" if e.lb_minus_cv is None or not report.comparable(e) else f"{e.lb_minus_cv:+.5f}",
                    console.fmt(e.private_score, 5),
                    e.status,
                )
                for e in report.entries
            ],
            right=(0, 4, 5, 6, 7, 8),
        )
        other = sorted({e.metric for e in report.entries if not report.comparable(e)})
        if other:
            console.echo(f"CV in {', '.join(other)} is not the leaderboard's metric ({report.metric}): no LB-CV, "
                         "and left out of the correlation")
    if report.reconciled:
        console.echo(f"settled {report.reconciled} interrupted upload(s) from Kaggle's list of submissions")
    for e in report.entries:
        if e.status == "error" and e.note:
            console.echo(f"#{e.id} was not scored by Kaggle: {e.note}")
    c = report.correlation
    if c is not None:
        console.echo(
            f"CV ({report.metric}) vs public LB over {c.n} submissions: Pearson r {console.fmt(c.pearson_honest, 3)} (honest), "
            f"{console.fmt(c.pearson_tuned, 3)} (tuned); Spearman rho {console.fmt(c.spearman_honest, 3)} (honest)"
        )
    if report.not_in_ledger:
        console.echo(
            f"{len(report.not_in_ledger)} Kaggle submission(s) are not in this ledger (made elsewhere)"
        )
    if report.leaderboard is not None:
        console.table(
            f"leaderboard: top {top}",
            ["rank", "team", "score", "date"],
            [(r.rank, r.team_name, console.fmt(r.score, 5), r.date[:10]) for r in report.leaderboard],
            right=(0, 2),
        )
        mine = report.my_entry
        console.echo(
            f"your best: rank {mine.rank}, {console.fmt(mine.score, 5)} ({mine.team_name})"
            if mine
            else "you are not on the public leaderboard yet"
        )
    if report.waited_out is not None:
        console.warn(
            f"#{report.waited_out.id} is still pending after {timeout:.0f} s; run `comp lb --wait` again later"
        )
    if plot:
        from comp.report import lb_plot, lb_points

        if lb_points(report.entries)[0]:
            console.echo(f"wrote {ws.relative(lb_plot(report.entries, ws.lb_plot))}")
        else:
            console.warn("--plot: no submission has both a CV and a public score yet; no plot written")


@app.command()
def evaluate(
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
    from comp.workspace import Workspace

    try:
        settings = Workspace.find(STATE.workspace).load_settings()
    except CompError:
        if STATE.workspace is not None:
            raise
        settings = None  # outside a workspace: the schema is inferred from the key
    result = evaluate_file(file, answers, settings, metric)
    pc = result.per_class
    console.table(
        f"{file.name} vs {answers.name}: per class",
        ["class", "support", "predicted", "precision", "recall", "F1"],
        [
            (
                c,
                int(pc["support"][j]),
                int(pc["n_predicted"][j]),
                f"{pc['precision'][j]:.4f}",
                f"{pc['recall'][j]:.4f}",
                f"{pc['f1'][j]:.4f}",
            )
            for j, c in enumerate(result.classes)
        ],
        right=(1, 2, 3, 4, 5),
    )
    if result.note:
        console.echo(f"({result.note})")
    console.echo(f"{result.metric} = {result.score:.5f} over {result.rows} rows")


# ---- reports -----------------------------------------------------------------------------------


@app.command()
def report(
    run: Annotated[str, typer.Argument(help="Run name.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for the report (default: runs/RUN/report/).")
    ] = None,
) -> None:
    """Per-class table, per-fold spread and figures of a run, in one self-contained report.html."""
    from comp.report import write_run_report

    ws = workspace()
    rep = write_run_report(ws, run, out)
    t = rep.tables.per_class
    console.table(
        f"run {run}: per class ({'argmax' if rep.task == 'multiclass' else 'at 0.5'} | tuned)",
        ["class", "support", "threshold", "P", "R", "F1", "P tuned", "R tuned", "F1 tuned"],
        [
            (
                r["class"],
                int(r["support"]),
                f"{r['threshold']:.3f}",
                *(
                    f"{r[c]:.3f}"
                    for c in (
                        "precision_0.5",
                        "recall_0.5",
                        "f1_0.5",
                        "precision_tuned",
                        "recall_tuned",
                        "f1_tuned",
                    )
                ),
            )
            for _, r in t.iterrows()
        ],
        right=range(1, 9),
    )
    console.table(
        f"{rep.metric} over folds",
        ["estimate", "mean", "std", "min", "max"],
        [
            (r["estimate"], *(console.fmt(r[c]) for c in ("mean", "std", "min", "max")))
            for _, r in rep.tables.spread.iterrows()
        ],
        right=range(1, 5),
    )
    for note in rep.notes:
        console.warn(note)
    console.echo(
        f"wrote {ws.relative(rep.html)} ({', '.join(p.name for p in rep.figures.values())} embedded)"
    )


@app.command()
def compare(
    runs: Annotated[list[str], typer.Argument(help="Runs to compare (two or more).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the tables and figures (default: reports/compare-RUNS/)."),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="OOF correlation: pearson | spearman.")] = "pearson",
) -> None:
    """Per-class F1 (tuned) side by side and the OOF correlation between runs (low blends well)."""
    from comp.report import write_comparison

    ws = workspace()
    result = write_comparison(ws, runs, out, method)
    names = result.runs
    console.table(
        "per-class F1 (tuned)",
        ["class", "support", *names, "best"],
        [
            (r["class"], int(r["support"]), *(f"{r[n]:.3f}" for n in names), r["best"])
            for _, r in result.f1.iterrows()
        ],
        right=range(1, len(names) + 2),
    )
    console.table(
        f"CV ({result.metric})",
        ["run", "model", "at 0.5", "tuned", "honest"],
        [
            (
                r["run"],
                r["model"],
                console.fmt(r["at_0.5"]),
                console.fmt(r["tuned"]),
                console.fmt(r["honest"]),
            )
            for _, r in result.scores.iterrows()
        ],
        right=(2, 3, 4),
    )
    console.table(
        f"OOF correlation ({method}, mean over classes)",
        ["run", *names],
        [(a, *(f"{result.correlation.loc[a, b]:.3f}" for b in names)) for a in names],
        right=range(1, len(names) + 1),
    )
    console.echo(f"wrote {ws.relative(result.html)} and {', '.join(p.name for p in result.figures.values())}")
@app.command()
def predict(
    run: Annotated[str, typer.Argument(help="A run trained with save_models: true.")],
    test: Annotated[Path, typer.Option("--test", help="CSV with comp.yaml's id and text columns.", exists=True, dir_okay=False)],
    out: Annotated[Path | None, typer.Option("--out", help="Output file (default: runs/RUN/predict-<file>.parquet).")] = None,
) -> None:
    """Predict a new file with a run's saved fold models (their probabilities averaged)."""
    from comp.atomic import write_csv, write_parquet
    from comp.predict import predict_run

    ws = workspace()
    target = out or ws.run(run).dir / f"predict-{test.stem}.parquet"
    writers = {".csv": write_csv, ".parquet": write_parquet, ".pq": write_parquet}
    if target.suffix.lower() not in writers:
        raise CompError(f"--out {target}: comp predict writes .csv or .parquet files; name the file x.csv or x.parquet")
    if target.is_dir():
        raise CompError(f"--out {target} is a folder; name a file (x.csv or x.parquet)")
    frame = predict_run(ws, run, test, log=lambda m: console.err.print(m, markup=False, style="dim"))
    writers[target.suffix.lower()](target, frame)
    console.echo(f"wrote {ws.relative(target)}: {len(frame)} rows, {frame.shape[1] - 1} probability columns")


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option("--keep", help="Build the demo workspace here instead of a temp folder.")] = None,
) -> None:
    """Run the whole loop on a built-in synthetic competition in a fresh temporary workspace."""
    from comp.demo import run_demo

    run_demo(keep)


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
