"""Fanning a run's tasks out: `comp train ... --executor local|slurm` and `comp tune ... --executor`.

An executor only starts processes; the shared-workspace protocol of :mod:`comp.locks` decides the
rest. For a run, the parent checks the config and writes run.yaml (so a bad config stops before
any task starts), then starts one `comp train CONFIG --fold k [--seed-index s]` per missing task
(a fold, or one seed of a fold); each task writes only its own folder and marker, the last one to
finish assembles the run, and the parent assembles it too if it finds every fold done. A failed
task is reported with the tail of its log while the others finish; running the same command again
starts only what is still missing. For a study, each task is one more `comp tune` worker on the
same study.

- ``local`` (:mod:`comp.executors.local`): subprocesses on this machine, ``workers`` at a time,
  or one per group of ``gpus_per_task`` GPUs of ``devices`` (CUDA_VISIBLE_DEVICES pinned).
- ``slurm`` (:mod:`comp.executors.slurm`): a submitit job array; preempted tasks are requeued and
  resume from what their folds saved.

``gpus_per_task > 1`` launches each task with torchrun (one process per GPU, data-parallel).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from comp.executors.options import (
    EXECUTORS,
    SLURM_CLUSTERS,
    LaunchOptions,
    Task,
    check_command_available,
    comp_command,
    launch_options,
    log_tail,
)
from comp.workspace import Workspace

__all__ = [
    "EXECUTORS",
    "SLURM_CLUSTERS",
    "FanOut",
    "LaunchOptions",
    "Task",
    "check_command_available",
    "comp_command",
    "execute",
    "fan_out_train",
    "fan_out_tune",
    "launch_options",
    "log_tail",
]


def execute(
    tasks: list[Task],
    options: LaunchOptions,
    folder: Path,
    *,
    command: list[str] | None = None,
    progress: Callable[[list[Task]], None] | None = None,
) -> list[Task]:
    """Run ``tasks`` with the chosen executor; returns them with their final status."""
    if options.executor == "local":
        from comp.executors.local import run_local

        return run_local(tasks, options, command=command, progress=progress)
    from comp.executors.slurm import run_slurm

    return run_slurm(tasks, options, folder, command=command, progress=progress)


@dataclass
class FanOut:
    tasks: list[Task]
    result: object = None  # comp.train.TrainResult for a run
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[Task]:
        return [t for t in self.tasks if t.failed]


def fan_out_train(
    ws: Workspace,
    config_path: Path,
    options: LaunchOptions,
    *,
    n_folds: int | None = None,
    seed: int | None = None,
    only_fold: int | None = None,
    overrides: list[str] | None = None,
    name: str | None = None,
    force: bool = False,
    seeds: int | None = None,
    echo: Callable[[str], None] | None = None,
    command: list[str] | None = None,
    progress: Callable[[list[Task]], None] | None = None,
) -> FanOut:
    """`comp train ... --executor`: one task per missing (fold, seed), then the run's result."""
    from comp.train import TrainResult, finish_run, fold_facts, prepare_run

    overrides = [*(overrides or []), *([f"seeds={seeds}"] if seeds is not None else [])]
    selected = None if only_fold is None else [only_fold]
    plan = prepare_run(
        ws,
        config_path,
        n_folds=n_folds,
        seed=seed,
        overrides=overrides,
        name=name,
        force=force,
        selected=selected,
        echo=echo,
    )
    done_before = [k for k in (selected or range(plan.n_folds)) if plan.fold_state(k) == "done"]
    units = plan.missing_units(selected)
    paths = plan.paths
    base = [
        "--workspace",
        str(ws.root),
        "train",
        str(Path(config_path).resolve()),
        "--folds",
        str(plan.n_folds),
        "--seed",
        str(plan.seed),
        "--name",
        paths.name,
        *[a for o in overrides for a in ("--set", o)],
    ]
    tasks = []
    for unit in units:
        argv = [*base, "--fold", str(unit.fold), *(["--seed-index", str(unit.seed)] if unit.n_seeds > 1 else [])]
        stem = f"fold-{unit.fold}" + (f"-seed-{unit.seed}" if unit.n_seeds > 1 else "")
        tasks.append(Task(unit.label, argv, paths.tasks_dir / f"{stem}.log"))
    if tasks:
        plan.log(
            f"{options.executor} executor: {len(tasks)} task(s) "
            f"({', '.join(t.key for t in tasks[:6])}{', ...' if len(tasks) > 6 else ''})"
        )
        execute(tasks, options, paths.slurm_dir, command=command, progress=progress)
    pending, scores = finish_run(plan)
    trained = sorted({int(t.key.split()[1]) for t in tasks if t.status == "done"})
    fold_seconds = {k: float(s) for k, s in fold_facts(paths, plan.n_folds, "seconds").items() if s is not None}
    result = TrainResult(
        paths.name,
        trained,
        done_before,
        pending,
        scores,
        fold_seconds,
        {},
        plan.notes,
        plan.record.cv_optimistic_reason if plan.record.cv_optimistic else None,
    )
    return FanOut(tasks, result)


def fan_out_tune(
    ws: Workspace,
    config_path: Path,
    space_path: Path,
    argv: list[str],
    options: LaunchOptions,
    n_workers: int,
    *,
    study: str,
    n_folds: int | None = None,
    folds_subset: str | None = None,
    storage: str | None = None,
    overrides: list[str] | None = None,
    command: list[str] | None = None,
    progress: Callable[[list[Task]], None] | None = None,
) -> FanOut:
    """`comp tune ... --executor`: ``n_workers`` `comp tune` workers on one study (checked here first)."""
    from comp.tune.worker import setup_study

    setup = setup_study(
        ws,
        config_path,
        space_path,
        study=study,
        n_folds=n_folds,
        folds_subset=folds_subset,
        storage=storage,
        overrides=overrides,
    )
    base = ["--workspace", str(ws.root), *argv]
    tasks = [Task(f"worker {i}", base, setup.dir / "tasks" / f"worker-{i}.log") for i in range(n_workers)]
    execute(tasks, options, setup.dir / "slurm", command=command, progress=progress)
    return FanOut(tasks)
