"""What an executor launches: the options of `--executor local|slurm` and the tasks (comp command
lines) it starts. Shared by comp.executors.local and comp.executors.slurm."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from comp.errors import CompError, ConfigError

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
        return [self.devices[i : i + g] for i in range(0, len(self.devices), g)]

    def slots(self, n_tasks: int) -> int:
        """How many tasks the local executor runs at once."""
        if self.devices:
            return max(1, min(len(self.device_groups()), self.workers or n_tasks, n_tasks))
        return max(1, min(self.workers or os.cpu_count() or 1, n_tasks))


def launch_options(
    executor: str,
    *,
    workers: int | None = None,
    devices: str | None = None,
    gpus_per_task: int = 1,
    slurm_partition: str | None = None,
    slurm_gpus_per_task: int | None = None,
    slurm_time: str | None = None,
    max_parallel: int | None = None,
    slurm_cluster: str = "slurm",
) -> LaunchOptions:
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
        raise ConfigError(
            f"--devices {devices}: {len(groups)} GPUs do not split into groups of --gpus-per-task "
            f"{gpus_per_task}; list a multiple of {gpus_per_task}"
        )
    if executor == "slurm" and (workers is not None or devices is not None):
        raise ConfigError(
            "--workers and --devices are for --executor local; Slurm places the tasks "
            "(--max-parallel caps how many run at once, --slurm-gpus-per-task sizes each)"
        )
    if executor == "local" and any(
        v is not None for v in (slurm_partition, slurm_gpus_per_task, slurm_time, max_parallel)
    ):
        raise ConfigError(
            "--slurm-partition, --slurm-gpus-per-task, --slurm-time and --max-parallel are for --executor slurm"
        )
    if executor == "slurm" and slurm_cluster == "slurm":
        check_command_available(
            "sbatch",
            "--executor slurm submits with sbatch from a Slurm login node; use "
            "--executor local here (or --slurm-cluster local to try the set-up)",
        )
    return LaunchOptions(
        executor,
        workers,
        groups,
        gpus_per_task,
        slurm_partition,
        slurm_gpus_per_task,
        _minutes(slurm_time),
        max_parallel,
        slurm_cluster,
    )


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


def check_command_available(name: str, what: str) -> None:
    import shutil

    if shutil.which(name) is None:
        raise CompError(f"{name} not found on this machine: {what}")
