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
    """A run's CV by fold, titled with its metric and direction."""
    rows = [(r["fold"], r["rows"], console.fmt(r["at_0.5"]), console.fmt(r["tuned"]), console.fmt(r["honest"]),
             "-" if r.get("seconds") is None else f"{r['seconds']:.1f}") for r in scores.per_fold]
    rows.append(("all", sum(r["rows"] for r in scores.per_fold), console.fmt(scores.at_05), console.fmt(scores.tuned),
                 console.fmt(scores.honest), ""))
    label = f"{scores.metric} ({scores.direction})"
    console.table(f"{title}: {label} by fold" if title else f"{label} by fold",
                  ["fold", "rows", "at 0.5", "tuned", "honest", "seconds"], rows, right=range(0, 6))
    console.echo(f"tuned flatters the CV by {scores.optimism + 0.0:+.4f} {scores.metric} over honest "
                 "(fitting on the OOF and scoring on it)")


_FAN_OUT = "Fan-out (executors)"


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
    seeds: Annotated[int | None, typer.Option("--seeds", min=1, help="Train each fold with N seeds and average them (config key seeds).")] = None,
    seed_index: Annotated[int | None, typer.Option("--seed-index", min=0, help="With --fold: train only this seed of the fold (one task).")] = None,
    executor: Annotated[str | None, typer.Option("--executor", help="Fan the tasks out: local (subprocesses) | slurm (submitit).", rich_help_panel=_FAN_OUT)] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="local: tasks at once (default: 1 per device, else 2).", rich_help_panel=_FAN_OUT)] = None,
    devices: Annotated[str | None, typer.Option("--devices", help="local: GPUs to use, e.g. 0,1,2,3 (CUDA_VISIBLE_DEVICES of each task).", rich_help_panel=_FAN_OUT)] = None,
    gpus_per_task: Annotated[int, typer.Option("--gpus-per-task", min=1, help="GPUs per task; >1 launches each task with torchrun.", rich_help_panel=_FAN_OUT)] = 1,
    slurm_partition: Annotated[str | None, typer.Option("--slurm-partition", rich_help_panel=_FAN_OUT)] = None,
    slurm_gpus_per_task: Annotated[int | None, typer.Option("--slurm-gpus-per-task", min=0, rich_help_panel=_FAN_OUT)] = None,
    slurm_time: Annotated[str | None, typer.Option("--slurm-time", help="Time limit per task: minutes or HH:MM:SS.", rich_help_panel=_FAN_OUT)] = None,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", min=1, help="slurm: tasks of the job array running at once.", rich_help_panel=_FAN_OUT)] = None,
    slurm_cluster: Annotated[str, typer.Option("--slurm-cluster", help="slurm | local | debug (submitit's local executors, to try a set-up on one machine).", rich_help_panel=_FAN_OUT)] = "slurm",
) -> None:
    """Train out-of-fold on the shared folds: OOF + test probabilities, scores and thresholds."""
    from comp.runs import is_main_process

    ws = workspace()
    if seed_index is not None and fold is None:
        raise CompError("--seed-index needs --fold (one task is one fold's seed)")
    if executor is not None:
        from comp.executors import fan_out_train, launch_options

        options = launch_options(executor, workers=workers, devices=devices, gpus_per_task=gpus_per_task,
                                 slurm_partition=slurm_partition, slurm_gpus_per_task=slurm_gpus_per_task,
                                 slurm_time=slurm_time, max_parallel=max_parallel, slurm_cluster=slurm_cluster)
        progress = console.TaskProgress(f"comp train {config.name} --executor {executor}")
        try:
            outcome = fan_out_train(ws, config, options, n_folds=n_folds, seed=seed, only_fold=fold, overrides=set_,
                                    name=name, force=force, seeds=seeds, echo=_echo_dim, progress=progress)
        finally:
            progress.close()
        _print_fan_out(outcome)
        result = outcome.result
    else:
        from comp.train import train as run_training

        echo = _echo_dim if is_main_process() else None
        result = run_training(ws, config, n_folds=n_folds, seed=seed, only_fold=fold, seed_index=seed_index,
                              seeds=seeds, overrides=set_, name=name, force=force, wait=wait, echo=echo)
        if not is_main_process():
            return
    _print_train_result(ws, result)
    if executor is not None and outcome.failed:
        raise CompError(f"{len(outcome.failed)} of {len(outcome.tasks)} task(s) failed ({', '.join(t.key for t in outcome.failed)}); "
                        "fix the cause and re-run the same command: it trains only what is missing")


def _echo_dim(message: str) -> None:
    console.err.print(message, markup=False, style="dim")


def _print_train_result(ws, result) -> None:
    for note in result.notes:
        console.warn(note)
    if result.skipped:
        console.echo(f"skipped finished fold(s) {', '.join(map(str, result.skipped))} (--force retrains them)")
    for label, owner in sorted(result.busy.items()):
        console.echo(f"skipped {label}: another process is training it ({owner}); --wait waits for it")
    if result.scores is None:
        console.echo(f"run {result.run}: folds {', '.join(map(str, result.pending))} still to train; the run's files "
                     "are assembled when every fold is done")
        return
    _print_scores(result.scores, f"run {result.run}")
    if result.optimistic:
        console.warn(f"run {result.run}: cv optimistic: {result.optimistic}")
    _print_seed_spread(ws, result.run)
    console.echo(f"wrote {ws.relative(ws.run(result.run).dir)}/ (oof.parquet, test.parquet, scores.json, thresholds.json)")


def _print_seed_spread(ws, run: str) -> None:
    """The line for a run of several seeds: each seed's honest CV, the class that moves most."""
    import json

    try:
        spread = json.loads(ws.run(run).scores.read_text(encoding="utf-8")).get("seeds")
    except (OSError, ValueError):
        return
    if spread:
        from comp.seeds import describe_spread

        console.echo(describe_spread(spread, spread.get("metric", "")))


def _print_fan_out(outcome) -> None:
    for task in outcome.failed:
        console.err.print(f"{task.key} failed ({task.status}); last lines of {task.log_name}:", markup=False, style="red")
        console.err.print(task.tail, markup=False)


@app.command()
def tune(
    config: Annotated[Path | None, typer.Argument(help="Model config YAML to tune.", exists=True, dir_okay=False)] = None,
    space: Annotated[Path | None, typer.Option("--space", help="Search space YAML (C: {log_uniform: [0.1, 30]}, ...).", exists=True, dir_okay=False)] = None,
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials the study should have (all workers together).")] = 20,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: CONFIG's stem + '-tune'); workers with the same name join it.")] = None,
    n_folds: Annotated[int | None, typer.Option("--folds", "-k", help="Folds of the fold file (default: comp.yaml's).")] = None,
    folds_subset: Annotated[str | None, typer.Option("--folds-subset", help="Train and score only these folds, e.g. 0,1 (default: all).")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="An Optuna RDB URL (default: a journal file in the study folder).")] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe | random.")] = "tpe",
    pruner: Annotated[str, typer.Option("--pruner", help="median | hyperband | none; sees the honest CV after each fold.")] = "median",
    pruner_startup: Annotated[int, typer.Option("--pruner-startup", min=0, help="Trials that finish before the pruner may stop one.")] = 5,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Times a trial whose worker died is queued again.")] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value for every trial.")] = None,
    retrain_best: Annotated[bool, typer.Option("--retrain-best", help="Then train the best config on all folds.")] = False,
    show: Annotated[str | None, typer.Option("--show", help="Show study STUDY: trials, best, figures; trains nothing.")] = None,
    executor: Annotated[str | None, typer.Option("--executor", help="Run workers in parallel: local | slurm.", rich_help_panel=_FAN_OUT)] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Workers (default: 2; slurm: --max-parallel or 2).", rich_help_panel=_FAN_OUT)] = None,
    devices: Annotated[str | None, typer.Option("--devices", help="local: GPUs, one worker per GPU.", rich_help_panel=_FAN_OUT)] = None,
    slurm_partition: Annotated[str | None, typer.Option("--slurm-partition", rich_help_panel=_FAN_OUT)] = None,
    slurm_gpus_per_task: Annotated[int | None, typer.Option("--slurm-gpus-per-task", min=0, rich_help_panel=_FAN_OUT)] = None,
    slurm_time: Annotated[str | None, typer.Option("--slurm-time", rich_help_panel=_FAN_OUT)] = None,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", min=1, rich_help_panel=_FAN_OUT)] = None,
    slurm_cluster: Annotated[str, typer.Option("--slurm-cluster", help="slurm | local | debug.", rich_help_panel=_FAN_OUT)] = "slurm",
) -> None:
    """Tune a config with Optuna on the honest CV; every trial is a run (runs/STUDY/trial-N)."""
    ws = workspace()
    if show is not None:
        _print_study(ws, show, storage, retries)
        return
    if config is None or space is None:
        raise CompError("comp tune needs CONFIG and --space SPACE.yaml (or --show STUDY to look at a study)")
    from comp.tune.worker import default_study_name
    from comp.tune.worker import tune as run_tune

    name = study or default_study_name(config)
    if executor is not None:
        from comp.executors import fan_out_tune, launch_options

        options = launch_options(executor, workers=workers if executor == "local" else None, devices=devices,
                                 slurm_partition=slurm_partition, slurm_gpus_per_task=slurm_gpus_per_task,
                                 slurm_time=slurm_time, max_parallel=max_parallel, slurm_cluster=slurm_cluster)
        argv = ["tune", str(config.resolve()), "--space", str(space.resolve()), "--trials", str(trials), "--study", name,
                "--sampler", sampler, "--pruner", pruner, "--pruner-startup", str(pruner_startup),
                "--retries", str(retries), *(["--folds", str(n_folds)] if n_folds else []),
                *(["--folds-subset", folds_subset] if folds_subset else []),
                *(["--storage", storage] if storage else []), *[a for o in set_ or [] for a in ("--set", o)]]
        n_workers = workers or (len(options.device_groups()) if options.devices else (max_parallel or 2))
        progress = console.TaskProgress(f"comp tune {config.name} --executor {executor}")
        try:
            outcome = fan_out_tune(ws, config, space, argv, options, n_workers, study=name, n_folds=n_folds,
                                   folds_subset=folds_subset, storage=storage, overrides=set_, progress=progress)
        finally:
            progress.close()
        _print_fan_out(outcome)
    else:
        result = run_tune(ws, config, space, trials=trials, study=name, n_folds=n_folds, folds_subset=folds_subset,
                          storage=storage, sampler=sampler, pruner=pruner, pruner_startup=pruner_startup,
                          retries=retries, overrides=set_, echo=_echo_dim)
        if result.failed_dead:
            console.warn(f"failed trial(s) {', '.join(map(str, result.failed_dead))}: their worker died (queued again)")
    view = _print_study(ws, name, storage, retries)
    if retrain_best:
        if view.best_config is None:
            raise CompError(f"study '{name}' has no complete trial yet: nothing to retrain")
        from comp.train import train as run_training

        console.echo(f"retraining {ws.relative(view.best_config)} on {view.identity['n_folds']} folds")
        result = run_training(ws, view.best_config, n_folds=view.identity["n_folds"], echo=_echo_dim)
        _print_train_result(ws, result)


def _print_study(ws, name: str, storage: str | None, retries: int):
    from comp.tune.show import show_study

    view = show_study(ws, name, storage, retries)
    metric = view.identity["metric"]
    subset = ",".join(map(str, view.identity["folds_subset"]))
    keys = list(view.identity["space"])
    console.table(
        f"study {name}: honest {_metric_label(metric, view.identity['direction'] == 'maximize')} on folds {subset} "
        f"of {view.identity['n_folds']}",
        ["trial", "state", *keys, "honest", "tuned", "seconds", "note"],
        [(r["number"], r["state"], *(_param(r["params"].get(k)) for k in keys), console.fmt(r["honest"]),
          console.fmt(r["tuned"]), "-" if r["seconds"] is None else f"{r['seconds']:.1f}", r["note"])
         for r in view.rows],
        right=(0, *range(2 + len(keys), 5 + len(keys))),
    )
    console.echo(f"trial N is run {name}/trial-N (a retry trains in its original's run)")
    for note in view.notes:
        console.echo(note)
    if view.best is not None:
        console.echo(f"best: trial {view.best['number']} ({view.best['run']}), honest {metric} {view.best['value']:.4f}: "
                     + ", ".join(f"{k}={_param(v)}" for k, v in view.best["params"].items()))
        console.echo(f"wrote {ws.relative(view.best_config)} (comp train it on every fold, or pass --retrain-best)")
    figures = ", ".join(ws.relative(p) for p in view.figures)
    console.echo(f"wrote {ws.relative(view.trials_csv)}" + (f", {figures}" if figures else ""))
    return view


def _param(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@app.command()
def runs(
    metric: Annotated[str | None, typer.Option("--metric", help="Show every run's CV in this metric (where recorded).")] = None,
    sort: Annotated[str | None, typer.Option("--sort", help="Best first by at_0.5 | tuned | honest (within one metric).")] = None,
) -> None:
    """List every run: model, folds, metric (↑ higher is better, ↓ lower), CV at 0.5 / tuned / honest, time."""
    from comp.evaluation import ESTIMATES
    from comp.metrics import get_metric
    from comp.runs import list_runs

    ws = workspace()
    if metric is not None:
        get_metric(metric)
    if sort is not None and sort not in ESTIMATES:
        raise CompError(f"--sort {sort} is not one of {', '.join(ESTIMATES)}")
    summaries = list_runs(ws, metric)
    if not summaries:
        console.echo("no runs yet: `comp train configs/tfidf.yaml`")
        return
    main = metric or ws.load_settings().metric
    by_metric: dict[str, list[str]] = {}
    for s in summaries:
        by_metric.setdefault(s.metric or "-", []).append(s.name)
    if sort is not None:
        key = {"at_0.5": "at_05"}.get(sort, sort)

        def rank(s):
            value = getattr(s, key)
            # the shown metric first; within a metric best first, whichever way it points; unscored last
            return (s.metric != main, s.metric or "", value is None,
                    0.0 if value is None else (-value if s.greater_is_better is not False else value))

        summaries = sorted(summaries, key=rank)
    console.table(None, ["run", "model", "folds", "metric", "at 0.5", "tuned", "honest", "seconds", "status"],
                  [(s.name, s.model, s.folds, _metric_label(s.metric, s.greater_is_better), console.fmt(s.at_05),
                    console.fmt(s.tuned), console.fmt(s.honest), "-" if s.seconds is None else f"{s.seconds:.0f}",
                    s.status) for s in summaries], right=(4, 5, 6, 7))
    missing = [s.name for s in summaries if s.status == "done" and s.tuned is None]
    if metric is not None and missing:
        console.warn(f"no {metric} score recorded for {', '.join(missing)}; add one with "
                     f"`comp thresholds RUN --metric {metric}`")
    others = {m: names for m, names in by_metric.items() if m not in (main, "-")}
    if others:
        listed = "; ".join(f"{', '.join(names)} ({m})" for m, names in others.items())
        console.warn(f"runs scored with another metric than {main}: {listed}. Their CV is not comparable with the "
                     f"others'{' and they are sorted apart' if sort else ''}; show one metric with "
                     f"`comp runs --metric {main}` or re-score with `comp thresholds RUN --metric {main}`")


def _metric_label(metric: str | None, greater_is_better: bool | None) -> str:
    """The metric with its direction: an arrow up when higher is better, down when lower is."""
    if metric is None:
        return "-"
    return f"{metric} {'↑' if greater_is_better else '↓' if greater_is_better is False else '?'}"


@app.command()
def thresholds(
    run: Annotated[str, typer.Argument(help="Run name.")],
    metric: Annotated[str | None, typer.Option("--metric", help="Metric to tune for (default: comp.yaml's).")] = None,
    offsets: Annotated[bool, typer.Option("--offsets", help="Multiclass: tune per-class offsets on the probabilities.")] = False,
) -> None:
    """Re-fit a run's decision thresholds on its OOF for a metric and show what they gain, honestly
    estimated. A probability metric (log_loss, roc_auc_macro) is scored and recorded next to the
    run's thresholds, which it leaves as they are."""
    import numpy as np

    from comp.metrics import per_class
    from comp.runs import rescore_run
    from comp.thresholds import apply_thresholds

    ws = workspace()
    scores, data, comp = rescore_run(ws, run, metric, offsets)
    settings = comp.settings
    if scores.tuned_for is not None and settings.task != "multiclass":
        half = per_class(comp.Y, apply_thresholds(data.oof, np.full(len(data.classes), 0.5), settings.task))
        tuned = per_class(comp.Y, apply_thresholds(data.oof, scores.thresholds, settings.task))
        console.table(f"run {run}: per-class F1 (thresholds tuned for {scores.tuned_for})",
                      ["class", "support", "threshold", "F1 at 0.5", "F1 tuned"],
                      [(c, int(half["support"][j]), f"{scores.thresholds[j]:.3f}", f"{half['f1'][j]:.4f}",
                        f"{tuned['f1'][j]:.4f}") for j, c in enumerate(data.classes)], right=(1, 2, 3, 4))
    console.echo(f"decision: {scores.method}")
    _print_scores(scores, f"run {run}")
    sign = 1.0 if scores.greater_is_better else -1.0
    if scores.tuned_for is not None and sign * (scores.honest - scores.at_05) < 0:
        console.warn(f"tuned thresholds score worse than 0.5/argmax on held-out folds (honest {scores.honest:.4f} vs "
                     f"{scores.at_05:.4f} {scores.metric}): they overfit the OOF"
                     + (f"; consider `comp thresholds {run}` without --offsets" if offsets else ""))
    if scores.tuned_for is None and data.scores.get("metric") not in (None, scores.metric):
        console.echo(f"{scores.metric} scores probabilities: the decision thresholds stay tuned for "
                     f"{data.scores.get('metric')}; recorded under other_metrics in {ws.relative(ws.run(run).scores)}")
    else:
        console.echo(f"wrote {ws.relative(ws.run(run).thresholds)} and {ws.relative(ws.run(run).scores)}")


@app.command()
def ensemble(
    runs: Annotated[list[str], typer.Argument(help="Runs to blend (trained on the same folds).")],
    name: Annotated[str, typer.Option("--name", help="Name of the ensemble run.")],
    method: Annotated[
        str, typer.Option("--method", help="mean | rank | weighted (Caruana, on the metric) | stack (a meta-model per class).")
    ] = "mean",
    metric: Annotated[str | None, typer.Option("--metric", help="Metric to optimise (default: comp.yaml's).")] = None,
    meta_model: Annotated[str, typer.Option("--meta-model", help="stack: logistic | lightgbm (pip install 'comp[stack]').")] = "logistic",
    meta_c: Annotated[float, typer.Option("--meta-c", help="stack, logistic: inverse L2 strength on standardised logits.")] = 1.0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run of that name.")] = False,
) -> None:
    """Blend runs into a new run (oof, test, scores, thresholds, weights), honestly scored."""
    from comp.ensemble import best_member, make_ensemble

    ws = workspace()
    result = make_ensemble(ws, runs, name, method, metric, force, meta_model, meta_c)
    scores = result.scores
    label = f"{scores.metric} ({scores.direction})"
    console.table(f"ensemble {name} ({method}): members in {label}", ["run", "weight", "honest CV"],
                  [(r, f"{w:.3f}", console.fmt(result.members[r].get("honest"))) for r, w in result.weights.items()],
                  right=(1, 2))
    _print_scores(scores, f"ensemble {name}")
    best, value = best_member(result.members, scores.metric)
    gain = (scores.honest - value) * (1.0 if scores.greater_is_better else -1.0)
    console.echo(f"honest CV {scores.honest:.4f} vs best member {best} {value:.4f} {scores.metric}: "
                 f"{'better' if gain > 0 else 'worse' if gain < 0 else 'no change'} by {abs(gain):.4f}")


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
    from comp.evaluation import direction
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
        f"{rep.metric} ({direction(rep.metric)}) over folds",
        ["estimate", "mean", "std", "min", "max"],
        [
            (r["estimate"], *(console.fmt(r[c]) for c in ("mean", "std", "min", "max")))
            for _, r in rep.tables.spread.iterrows()
        ],
        right=range(1, 5),
    )
    _print_seed_spread(ws, run)
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
    metric: Annotated[str | None, typer.Option("--metric", help="CV of every run in this metric (default: comp.yaml's).")] = None,
) -> None:
    """Per-class F1 (tuned) side by side, CV in one metric, and the OOF correlation between runs (low blends well)."""
    from comp.evaluation import direction
    from comp.report import write_comparison

    ws = workspace()
    result = write_comparison(ws, runs, out, method, metric)
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
        f"CV ({result.metric}, {direction(result.metric)})",
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
    for note in result.notes:
        console.warn(note)
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
