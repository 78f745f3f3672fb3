"""Training commands: train (in process or fanned out over executors) and tune (an Optuna study)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from comp import console, tables
from comp.cli.context import FAN_OUT, workspace
from comp.errors import CompError


def train(
    ctx: typer.Context,
    config: Annotated[
        Path, typer.Argument(help="Model config YAML; its file stem is the run name.", exists=True, dir_okay=False)
    ],
    n_folds: Annotated[
        int | None, typer.Option("--folds", "-k", help="Number of folds (default: comp.yaml's).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Fold seed (default: comp.yaml's).")] = None,
    fold: Annotated[
        int | None, typer.Option("--fold", help="Train this fold only (spread folds over machines).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config value: --set C=2 --set a.b=v.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name (default: the config's file stem).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Retrain finished folds and replace the run's config.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for folds another process is training instead of skipping them.")
    ] = False,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", min=1, help="Train each fold with N seeds and average them (config key seeds)."),
    ] = None,
    seed_index: Annotated[
        int | None,
        typer.Option("--seed-index", min=0, help="With --fold: train only this seed of the fold (one task)."),
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor", help="Fan the tasks out: local (subprocesses) | slurm (submitit).", rich_help_panel=FAN_OUT
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="local: tasks at once (default: 1 per device, else 2).", rich_help_panel=FAN_OUT
        ),
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices",
            help="local: GPUs to use, e.g. 0,1,2,3 (CUDA_VISIBLE_DEVICES of each task).",
            rich_help_panel=FAN_OUT,
        ),
    ] = None,
    gpus_per_task: Annotated[
        int,
        typer.Option(
            "--gpus-per-task",
            min=1,
            help="GPUs per task; >1 launches each task with torchrun.",
            rich_help_panel=FAN_OUT,
        ),
    ] = 1,
    slurm_partition: Annotated[str | None, typer.Option("--slurm-partition", rich_help_panel=FAN_OUT)] = None,
    slurm_gpus_per_task: Annotated[
        int | None, typer.Option("--slurm-gpus-per-task", min=0, rich_help_panel=FAN_OUT)
    ] = None,
    slurm_time: Annotated[
        str | None,
        typer.Option("--slurm-time", help="Time limit per task: minutes or HH:MM:SS.", rich_help_panel=FAN_OUT),
    ] = None,
    max_parallel: Annotated[
        int | None,
        typer.Option(
            "--max-parallel", min=1, help="slurm: tasks of the job array running at once.", rich_help_panel=FAN_OUT
        ),
    ] = None,
    slurm_cluster: Annotated[
        str,
        typer.Option(
            "--slurm-cluster",
            help="slurm | local | debug (submitit's local executors, to try a set-up on one machine).",
            rich_help_panel=FAN_OUT,
        ),
    ] = "slurm",
) -> None:
    """Train out-of-fold on the shared folds: OOF + test probabilities, scores and thresholds."""
    from comp.runs import is_main_process

    ws = workspace(ctx)
    if seed_index is not None and fold is None:
        raise CompError("--seed-index needs --fold (one task is one fold's seed)")
    if executor is None:
        from comp.train import train as run_training

        echo = tables.echo_dim if is_main_process() else None
        result = run_training(
            ws,
            config,
            n_folds=n_folds,
            seed=seed,
            only_fold=fold,
            seed_index=seed_index,
            seeds=seeds,
            overrides=set_,
            name=name,
            force=force,
            wait=wait,
            echo=echo,
        )
        if is_main_process():
            tables.train_result(ws, result)
        return
    from comp.executors import fan_out_train, launch_options

    options = launch_options(
        executor,
        workers=workers,
        devices=devices,
        gpus_per_task=gpus_per_task,
        slurm_partition=slurm_partition,
        slurm_gpus_per_task=slurm_gpus_per_task,
        slurm_time=slurm_time,
        max_parallel=max_parallel,
        slurm_cluster=slurm_cluster,
    )
    progress = console.TaskProgress(f"comp train {config.name} --executor {executor}")
    try:
        outcome = fan_out_train(
            ws,
            config,
            options,
            n_folds=n_folds,
            seed=seed,
            only_fold=fold,
            overrides=set_,
            name=name,
            force=force,
            seeds=seeds,
            echo=tables.echo_dim,
            progress=progress,
        )
    finally:
        progress.close()
    tables.failed_tasks(outcome)
    tables.train_result(ws, outcome.result)
    if outcome.failed:
        raise CompError(
            f"{len(outcome.failed)} of {len(outcome.tasks)} task(s) failed "
            f"({', '.join(t.key for t in outcome.failed)}); "
            "fix the cause and re-run the same command: it trains only what is missing"
        )


def tune(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Argument(help="Model config YAML to tune.", exists=True, dir_okay=False)
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            "--space", help="Search space YAML (C: {log_uniform: [0.1, 30]}, ...).", exists=True, dir_okay=False
        ),
    ] = None,
    trials: Annotated[
        int, typer.Option("--trials", min=1, help="Trials the study should have (all workers together).")
    ] = 20,
    study: Annotated[
        str | None,
        typer.Option(
            "--study", help="Study name (default: CONFIG's stem + '-tune'); workers with the same name join it."
        ),
    ] = None,
    n_folds: Annotated[
        int | None, typer.Option("--folds", "-k", help="Folds of the fold file (default: comp.yaml's).")
    ] = None,
    folds_subset: Annotated[
        str | None, typer.Option("--folds-subset", help="Train and score only these folds, e.g. 0,1 (default: all).")
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="An Optuna RDB URL (default: a journal file in the study folder).")
    ] = None,
    sampler: Annotated[str, typer.Option("--sampler", help="tpe | random.")] = "tpe",
    pruner: Annotated[
        str, typer.Option("--pruner", help="median | hyperband | none; sees the honest CV after each fold.")
    ] = "median",
    pruner_startup: Annotated[
        int, typer.Option("--pruner-startup", min=0, help="Trials that finish before the pruner may stop one.")
    ] = 5,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="Times a trial whose worker died is queued again.")
    ] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value for every trial.")] = None,
    retrain_best: Annotated[
        bool, typer.Option("--retrain-best", help="Then train the best config on all folds.")
    ] = False,
    show: Annotated[
        str | None, typer.Option("--show", help="Show study STUDY: trials, best, figures; trains nothing.")
    ] = None,
    executor: Annotated[
        str | None, typer.Option("--executor", help="Run workers in parallel: local | slurm.", rich_help_panel=FAN_OUT)
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Workers (default: 2; slurm: --max-parallel or 2).", rich_help_panel=FAN_OUT
        ),
    ] = None,
    devices: Annotated[
        str | None, typer.Option("--devices", help="local: GPUs, one worker per GPU.", rich_help_panel=FAN_OUT)
    ] = None,
    slurm_partition: Annotated[str | None, typer.Option("--slurm-partition", rich_help_panel=FAN_OUT)] = None,
    slurm_gpus_per_task: Annotated[
        int | None, typer.Option("--slurm-gpus-per-task", min=0, rich_help_panel=FAN_OUT)
    ] = None,
    slurm_time: Annotated[str | None, typer.Option("--slurm-time", rich_help_panel=FAN_OUT)] = None,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", min=1, rich_help_panel=FAN_OUT)] = None,
    slurm_cluster: Annotated[
        str, typer.Option("--slurm-cluster", help="slurm | local | debug.", rich_help_panel=FAN_OUT)
    ] = "slurm",
) -> None:
    """Tune a config with Optuna on the honest CV; every trial is a run (runs/STUDY/trial-N)."""
    ws = workspace(ctx)
    if show is not None:
        _show_study(ws, show, storage, retries)
        return
    if config is None or space is None:
        raise CompError("comp tune needs CONFIG and --space SPACE.yaml (or --show STUDY to look at a study)")
    from comp.tune.worker import default_study_name
    from comp.tune.worker import tune as run_tune

    name = study or default_study_name(config)
    if executor is not None:
        from comp.executors import fan_out_tune, launch_options

        options = launch_options(
            executor,
            workers=workers if executor == "local" else None,
            devices=devices,
            slurm_partition=slurm_partition,
            slurm_gpus_per_task=slurm_gpus_per_task,
            slurm_time=slurm_time,
            max_parallel=max_parallel,
            slurm_cluster=slurm_cluster,
        )
        # each worker is this command without the fan-out options, joining the same study
        argv = [
            "tune",
            str(config.resolve()),
            "--space",
            str(space.resolve()),
            "--trials",
            str(trials),
            "--study",
            name,
            "--sampler",
            sampler,
            "--pruner",
            pruner,
            "--pruner-startup",
            str(pruner_startup),
            "--retries",
            str(retries),
            *(["--folds", str(n_folds)] if n_folds else []),
            *(["--folds-subset", folds_subset] if folds_subset else []),
            *(["--storage", storage] if storage else []),
            *[a for o in set_ or [] for a in ("--set", o)],
        ]
        n_workers = workers or (len(options.device_groups()) if options.devices else (max_parallel or 2))
        progress = console.TaskProgress(f"comp tune {config.name} --executor {executor}")
        try:
            outcome = fan_out_tune(
                ws,
                config,
                space,
                argv,
                options,
                n_workers,
                study=name,
                n_folds=n_folds,
                folds_subset=folds_subset,
                storage=storage,
                overrides=set_,
                progress=progress,
            )
        finally:
            progress.close()
        tables.failed_tasks(outcome)
    else:
        result = run_tune(
            ws,
            config,
            space,
            trials=trials,
            study=name,
            n_folds=n_folds,
            folds_subset=folds_subset,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            pruner_startup=pruner_startup,
            retries=retries,
            overrides=set_,
            echo=tables.echo_dim,
        )
        if result.failed_dead:
            console.warn(f"failed trial(s) {', '.join(map(str, result.failed_dead))}: their worker died (queued again)")
    view = _show_study(ws, name, storage, retries)
    if retrain_best:
        if view.best_config is None:
            raise CompError(f"study '{name}' has no complete trial yet: nothing to retrain")
        from comp.train import train as run_training

        console.echo(f"retraining {ws.relative(view.best_config)} on {view.identity['n_folds']} folds")
        result = run_training(ws, view.best_config, n_folds=view.identity["n_folds"], echo=tables.echo_dim)
        tables.train_result(ws, result)


def _show_study(ws, name: str, storage: str | None, retries: int):
    from comp.tune.show import show_study

    view = show_study(ws, name, storage, retries)
    tables.study(ws, name, view)
    return view
