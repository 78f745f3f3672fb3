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

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from comp.errors import CompError, ConfigError
from comp.workspace import Workspace

EXECUTORS = ("local", "slurm")
SLURM_CLUSTERS = ("slurm", "local", "debug")


@dataclass(frozen=True)
class LaunchOptions:
    executor: str  # local | slurm
    workers: int | None = None
    devices: tuple[str, ...] = ()
    gpus_per_task: int = 1
    slurm_partition: str | None = None
    slurm_gpus_per_task: int | None = None
    slurm_time_min: int | None = None
    max_parallel: int | None = None
    slurm_cluster: str = "slurm"

    def device_groups(self) -> list[tuple[str, ...]]:
        """The GPUs of each local slot: ``devices`` cut into groups of ``gpus_per_task``."""
        g = self.gpus_per_task
        return [self.devices[i:i + g] for i in range(0, len(self.devices), g)]

    def slots(self, n_tasks: int) -> int:
        """How many tasks the local executor runs at once."""
        if self.devices:
            return max(1, min(len(self.device_groups()), self.workers or n_tasks, n_tasks))
        return max(1, min(self.workers or os.cpu_count() or 1, n_tasks))


def launch_options(executor: str, *, workers: int | None = None, devices: str | None = None, gpus_per_task: int = 1,
                   slurm_partition: str | None = None, slurm_gpus_per_task: int | None = None,
                   slurm_time: str | None = None, max_parallel: int | None = None,
                   slurm_cluster: str = "slurm") -> LaunchOptions:
    """The CLI's fan-out options, checked: every mistake is one line before anything starts."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: choose one of {', '.join(EXECUTORS)}")
    if slurm_cluster not in SLURM_CLUSTERS:
        raise ConfigError(f"--slurm-cluster {slurm_cluster}: choose one of {', '.join(SLURM_CLUSTERS)}")
    groups = tuple(d.strip() for d in (devices or "").split(",") if d.strip())
    if devices is not None and not groups:
        raise ConfigError(f"--devices {devices!r}: give GPU indices separated by commas, e.g. --devices 0,1")
    if len(set(groups)) != len(groups):
        raise ConfigError(f"--devices {devices}: a GPU is listed twice")
    if groups and len(groups) % gpus_per_task:
        raise ConfigError(f"--devices {devices}: {len(groups)} GPUs do not split into groups of --gpus-per-task "
                          f"{gpus_per_task}; list a multiple of {gpus_per_task}")
    if executor == "slurm" and (workers is not None or devices is not None):
        raise ConfigError("--workers and --devices are for --executor local; Slurm places the tasks "
                          "(--max-parallel caps how many run at once, --slurm-gpus-per-task sizes each)")
    if executor == "local" and any(v is not None for v in (slurm_partition, slurm_gpus_per_task, slurm_time, max_parallel)):
        raise ConfigError("--slurm-partition, --slurm-gpus-per-task, --slurm-time and --max-parallel are for "
                          "--executor slurm")
    if executor == "slurm" and slurm_cluster == "slurm":
        check_command_available("sbatch", "--executor slurm submits with sbatch from a Slurm login node; use "
                                          "--executor local here (or --slurm-cluster local to try the set-up)")
    return LaunchOptions(executor, workers, groups, gpus_per_task, slurm_partition, slurm_gpus_per_task,
                         _minutes(slurm_time), max_parallel, slurm_cluster)


def _minutes(text: str | None) -> int | None:
    """``--slurm-time``: minutes (``90``) or ``[D-]HH:MM[:SS]`` as sbatch writes it, in whole minutes."""
    if text is None:
        return None
    try:
        days, _, clock = text.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
        if len(parts) == 1:
            minutes = parts[0]
        else:
            parts += [0] * (3 - len(parts))
            minutes = parts[0] * 60 + parts[1] + (parts[2] + 59) // 60
        minutes += int(days or 0) * 24 * 60
    except ValueError:
        minutes = -1
    if minutes <= 0:
        raise ConfigError(f"--slurm-time {text}: give minutes (90) or HH:MM:SS (01:30:00)")
    return minutes


@dataclass
class Task:
    """One process an executor starts: ``argv`` is the comp command line after ``comp``."""

    key: str  # "fold 3", "fold 3 seed 1", "worker 2"
    argv: list[str]
    log: Path  # local: the task's stdout and stderr; slurm: submitit's log, once known
    status: str = "queued"  # queued | running | done | failed (exit N) | ...
    seconds: float | None = None
    where: str = ""  # "cpu", "cuda 0,1", "job 1234_3"
    tail: str = ""  # the end of the log of a failed task

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")

    @property
    def log_name(self) -> str:
        return str(self.log)


def comp_command() -> list[str]:
    """The command that starts comp in a task: this interpreter, so the task sees the same install."""
    return [sys.executable, "-m", "comp"]


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


def execute(tasks: list[Task], options: LaunchOptions, folder: Path, *, command: list[str] | None = None,
            progress: Callable[[list[Task]], None] | None = None) -> list[Task]:
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


def fan_out_train(ws: Workspace, config_path: Path, options: LaunchOptions, *, n_folds: int | None = None,
                  seed: int | None = None, only_fold: int | None = None, overrides: list[str] | None = None,
                  name: str | None = None, force: bool = False, seeds: int | None = None,
                  echo: Callable[[str], None] | None = None, command: list[str] | None = None,
                  progress: Callable[[list[Task]], None] | None = None) -> FanOut:
    """`comp train ... --executor`: one task per missing (fold, seed), then the run's result."""
    from comp.train import TrainResult, finish_run, fold_facts, prepare_run

    overrides = [*(overrides or []), *([f"seeds={seeds}"] if seeds is not None else [])]
    selected = None if only_fold is None else [only_fold]
    plan = prepare_run(ws, config_path, n_folds=n_folds, seed=seed, overrides=overrides, name=name, force=force,
                       selected=selected, echo=echo)
    done_before = [k for k in (selected or range(plan.n_folds)) if plan.fold_state(k) == "done"]
    units = plan.missing_units(selected)
    paths = plan.paths
    base = ["--workspace", str(ws.root), "train", str(Path(config_path).resolve()), "--folds", str(plan.n_folds),
            "--seed", str(plan.seed), "--name", paths.name, *[a for o in overrides for a in ("--set", o)]]
    tasks = []
    for unit in units:
        argv = [*base, "--fold", str(unit.fold), *(["--seed-index", str(unit.seed)] if unit.n_seeds > 1 else [])]
        stem = f"fold-{unit.fold}" + (f"-seed-{unit.seed}" if unit.n_seeds > 1 else "")
        tasks.append(Task(unit.label, argv, paths.tasks_dir / f"{stem}.log"))
    if tasks:
        plan.log(f"{options.executor} executor: {len(tasks)} task(s) "
                 f"({', '.join(t.key for t in tasks[:6])}{', ...' if len(tasks) > 6 else ''})")
        execute(tasks, options, paths.slurm_dir, command=command, progress=progress)
    pending, scores = finish_run(plan)
    trained = sorted({int(t.key.split()[1]) for t in tasks if t.status == "done"})
    fold_seconds = {k: float(s) for k, s in fold_facts(paths, plan.n_folds, "seconds").items() if s is not None}
    result = TrainResult(paths.name, trained, done_before, pending, scores, fold_seconds, {}, plan.notes,
                         plan.record.get("cv_optimistic_reason") if plan.record.get("cv_optimistic") else None)
    return FanOut(tasks, result)


def check_command_available(name: str, what: str) -> None:
    import shutil

    if shutil.which(name) is None:
        raise CompError(f"{name} not found on this machine: {what}")


def fan_out_tune(ws: Workspace, config_path: Path, space_path: Path, argv: list[str], options: LaunchOptions,
                 n_workers: int, *, study: str, n_folds: int | None = None, folds_subset: str | None = None,
                 storage: str | None = None, overrides: list[str] | None = None, command: list[str] | None = None,
                 progress: Callable[[list[Task]], None] | None = None) -> FanOut:
    """`comp tune ... --executor`: ``n_workers`` `comp tune` workers on one study (checked here first)."""
    from comp.tune.worker import setup_study

    setup = setup_study(ws, config_path, space_path, study=study, n_folds=n_folds, folds_subset=folds_subset,
                        storage=storage, overrides=overrides)
    base = ["--workspace", str(ws.root), *argv]
    tasks = [Task(f"worker {i}", base, setup.dir / "tasks" / f"worker-{i}.log") for i in range(n_workers)]
    execute(tasks, options, setup.dir / "slurm", command=command, progress=progress)
    return FanOut(tasks)
