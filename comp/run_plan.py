"""A run's plan: comp.yaml, the config and the fold file checked, and run.yaml checked or written
under the run lock, before any fold starts (:func:`prepare_run`).

A task of the plan (:class:`Unit`) is one fold, or one seed of a fold with ``seeds: N``.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from comp.config import to_dict
from comp.data import Competition, load_competition
from comp.digest import sha256_file
from comp.errors import ConfigError, RunError
from comp.fingerprint import data_fingerprint
from comp.fold_state import dir_state, done_folds, fold_state
from comp.folds import load_folds, make_folds, write_folds
from comp.locks import busy_folds, run_lock
from comp.models import get_family, load_model_config, preflight, run_inputs
from comp.models.base import TaskInfo
from comp.provenance import git_commit, now, package_versions
from comp.record import CompetitionRecord, FoldsRecord, RunRecord
from comp.run_files import read_run_yaml, write_run_yaml
from comp.run_identity import difference, run_digest
from comp.runlog import RunLog, is_main_process
from comp.workspace import CompSettings, RunPaths, Workspace, check_folds


def task_info(settings: CompSettings) -> TaskInfo:
    negative = str(settings.classes[0]) if settings.task == "binary" else None
    return TaskInfo(settings.task, settings.output_names, settings.metric, settings.min_labels, negative)


def ensure_folds(
    ws: Workspace, comp: Competition, n_folds: int, seed: int, log: Callable[[str], None]
) -> tuple[Path, np.ndarray]:
    """The shared fold file for (K, seed, group column), created if missing, checked against train.

    Two processes creating it at once write the same bytes (the assignment is seeded), each by an
    atomic rename, so no lock is needed.
    """
    group = comp.settings.group_column
    path = ws.folds_csv(n_folds, seed, group)
    if not path.exists():
        write_folds(path, make_folds(comp, n_folds, seed, group))
        log(f"created {ws.relative(path)}")
    return path, load_folds(path, comp, n_folds)


def check_seeds(config) -> None:
    seeds = getattr(config, "seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be 1 or more (models averaged per fold), got {seeds!r}")


def _describe_busy(busy: dict) -> str:
    return "; ".join(f"fold {k}: {owner.describe()}" for k, owner in sorted(busy.items()))


def _clear_run(paths: RunPaths, folds: list[int]) -> None:
    """Remove the given folds' files and the assembled outputs (the caller holds the run lock and has
    checked that no other process trains these folds)."""
    for k in folds:
        shutil.rmtree(paths.fold_dir(k), ignore_errors=True)
    for output in (paths.oof, paths.test, paths.scores, paths.thresholds):
        output.unlink(missing_ok=True)


def _prepare_run(
    paths: RunPaths,
    new: RunRecord,
    defaults: dict[str, Any],
    selected: list[int],
    force: bool,
    log: RunLog,
    notes: list[str],
) -> RunRecord:
    """Under the run lock: check the run against run.yaml (or replace it) and write run.yaml."""
    existing = read_run_yaml(paths) if paths.exists else None
    old_folds = existing.folds.n_folds if existing is not None else 0
    every_fold = range(max(old_folds, new.folds.n_folds))
    problem = difference(paths, existing, new, defaults) if existing is not None else None
    if problem is not None:
        busy = busy_folds(paths.dir, every_fold)
        if busy:
            raise RunError(
                f"{problem.args[0].split(';')[0]}, and another process is training it "
                f"({_describe_busy(busy)}); let it finish, or pass --name NEW to train beside it"
            )
        if not force and done_folds(paths, old_folds):
            raise problem
        # another run under this name, with no finished fold (or --force): this one replaces it
        _clear_run(paths, list(every_fold))
        if not force:
            why = problem.args[0].split("(", 1)[-1].split(")")[0]
            note = f"replaced run '{paths.name}', which had no finished fold ({why})"
            notes.append(note)
            log(note)
        existing = None
    elif force:
        busy = busy_folds(paths.dir, selected)
        if busy:
            raise RunError(
                f"run '{paths.name}' is being trained by another process ({_describe_busy(busy)}); "
                "let it finish (or stop it) before retraining with --force"
            )
        _clear_run(paths, selected)
    record = new
    if existing is not None:  # the same run: keep its identity and history
        record = dataclasses.replace(
            new,
            digest=existing.digest or new.digest,
            created=existing.created,
            completed=existing.completed,
            seconds=existing.seconds,
            data={**new.data, "recorded": existing.data.get("recorded", new.data["recorded"])},
        )
    write_run_yaml(paths, record)
    return record


@dataclass(frozen=True)
class Unit:
    """One task of a run: fold ``fold`` trained with seed index ``seed`` (0 when the run has one seed)."""

    fold: int
    seed: int = 0
    n_seeds: int = 1

    @property
    def label(self) -> str:
        return f"fold {self.fold}" if self.n_seeds == 1 else f"fold {self.fold} seed {self.seed}"

    @property
    def lock_seed(self) -> int | None:
        """The seed part of the task's lock: none with one seed (the fold's own lock)."""
        return None if self.n_seeds == 1 else self.seed


@dataclass
class RunPlan:
    """Everything a run's tasks need, checked, with run.yaml written (:func:`prepare_run`)."""

    ws: Workspace
    paths: RunPaths
    config: Any
    family: Any
    task: TaskInfo
    comp: Competition
    folds: np.ndarray  # (n_train,) fold of each row
    n_folds: int
    seed: int  # the fold seed: comp.yaml's or --seed
    record: RunRecord
    log: RunLog
    main: bool
    notes: list[str] = field(default_factory=list)
    stage: Any = None  # comp.second_stage.SecondStage of a student (pseudo_labels / distill), else None

    @property
    def digest(self) -> str:
        return self.record.digest

    @property
    def n_seeds(self) -> int:
        return int(getattr(self.config, "seeds", 1))

    def shape(self, k: int) -> tuple[int, int, int]:
        return int((self.folds == k).sum()), len(self.comp.test_texts), self.task.n_outputs

    def fold_state(self, k: int) -> str:
        return fold_state(self.paths, k, self.digest, *self.shape(k))

    def unit_dir(self, unit: Unit) -> Path:
        return self.paths.task_dir(unit.fold, unit.seed, unit.n_seeds)

    def unit_state(self, unit: Unit) -> str:
        return dir_state(self.unit_dir(unit), self.digest, *self.shape(unit.fold))

    def units(self, folds: list[int] | None = None, seed_index: int | None = None) -> list[Unit]:
        seeds = range(self.n_seeds) if seed_index is None else [seed_index]
        return [Unit(k, s, self.n_seeds) for k in (range(self.n_folds) if folds is None else folds) for s in seeds]

    def missing_units(self, folds: list[int] | None = None) -> list[Unit]:
        """The tasks still to train (of ``folds``): not done, in folds that are not done."""
        return [u for u in self.units(folds) if self.fold_state(u.fold) != "done" and self.unit_state(u) != "done"]

    def pending_folds(self) -> list[int]:
        return [k for k in range(self.n_folds) if self.fold_state(k) != "done"]


def prepare_run(
    ws: Workspace,
    config_path: Path,
    *,
    n_folds: int | None = None,
    seed: int | None = None,
    overrides: list[str] | None = None,
    name: str | None = None,
    force: bool = False,
    selected: list[int] | None = None,
    echo: Callable[[str], None] | None = None,
) -> RunPlan:
    """Check comp.yaml, the config (and the family's preflight) and the fold file, then check the run
    against run.yaml, or write it, under the run lock. ``force`` clears the ``selected`` folds."""
    settings = ws.load_settings()
    settings.require_schema()
    config = load_model_config(config_path, overrides)
    family = get_family(config.model)
    task = task_info(settings)
    try:
        check_seeds(config)
        preflight(family, config, task)
        inputs = run_inputs(family, config)
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    run_name = name or Path(config_path).stem
    paths = ws.run(run_name)
    n_folds = check_folds(n_folds, settings)
    seed = settings.seed if seed is None else seed
    for k in selected or []:
        if not 0 <= k < n_folds:
            raise RunError(f"--fold {k} is out of range: folds are 0..{n_folds - 1}")
    main = is_main_process()
    log = RunLog(paths.log if main else None, echo if main else None)

    comp = load_competition(ws, settings)
    stage = None
    if config.pseudo_labels is not None or config.distill is not None:
        from comp.second_stage import prepare as prepare_stage

        # the teachers are checked against the fold file this run will use, before it is created
        expected = ws.folds_csv(n_folds, seed, settings.group_column)
        expected_record = FoldsRecord(
            ws.relative(expected),
            sha256_file(expected) if expected.exists() else "none",
            n_folds,
            seed,
            settings.group_column,
        )
        try:
            stage = prepare_stage(ws, config, task, expected_record, run_name, family, comp)
        except ConfigError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
    if main:
        fold_path, folds = ensure_folds(ws, comp, n_folds, seed, log)
    else:  # other ranks read the file rank 0 makes (rank 0 may still be writing it: wait up to 10 min)
        fold_path = ws.folds_csv(n_folds, seed, settings.group_column)
        deadline = time.monotonic() + 600
        while not fold_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        folds = load_folds(fold_path, comp, n_folds)
    config_dict = to_dict(config)
    fold_record = FoldsRecord(ws.relative(fold_path), sha256_file(fold_path), n_folds, seed, settings.group_column)
    data = data_fingerprint(comp, now())
    new_record = RunRecord(
        name=run_name,
        kind="model",
        model=config.model,
        config=config_dict,
        config_file=ws.relative(Path(config_path)),
        folds=fold_record,
        competition=CompetitionRecord(
            settings.competition, settings.task, settings.metric, list(settings.output_names)
        ),
        data=data,
        inputs=inputs,
        second_stage=stage.record if stage is not None else None,
        cv_optimistic=bool(stage and stage.optimistic),
        cv_optimistic_reason=stage.optimistic if stage else None,
        digest=run_digest(config_dict, fold_record, data, stage.record if stage is not None else None, inputs),
        versions=package_versions(),
        git_commit=git_commit(ws.root),
        created=now(),
    )
    notes: list[str] = []
    if main:
        with run_lock(paths.dir):
            record = _prepare_run(
                paths,
                new_record,
                to_dict(family.Config()),
                list(range(n_folds)) if selected is None else selected,
                force,
                log,
                notes,
            )
        log(
            f"run {run_name}: model {config.model}, {n_folds} folds from {fold_record.file}"
            + (f", {config.seeds} seeds per fold" if config.seeds > 1 else "")
        )
        log(f"config: {config_dict}", echo=False)
    else:
        record = _wait_for_run_yaml(paths)
    if stage is not None and stage.optimistic:
        log.warn(f"run {run_name}: its CV will be optimistic: {stage.optimistic}")
    return RunPlan(ws, paths, config, family, task, comp, folds, n_folds, seed, record, log, main, notes, stage)


def _wait_for_run_yaml(paths: RunPaths, timeout: float = 600.0) -> RunRecord:
    """On a non-zero rank: run.yaml as rank 0 writes it at the start of the launch."""
    started = time.monotonic()
    while not paths.exists and time.monotonic() - started < timeout:
        time.sleep(0.5)
    return read_run_yaml(paths)
