"""The out-of-fold loop: for each fold, fit on the other folds, predict the held-out rows and test.

Before anything is written, comp.yaml, the config and the family's ``preflight`` are checked, so a
bad value stops the run with one line instead of failing inside fold 0. Each finished fold leaves its
arrays and then a done marker; a re-run skips finished folds, so an interrupted run continues where
it stopped. With ``seeds: N`` a fold is N tasks (one per seed, fold-<k>/seed-<s>/, each with its own
marker) whose probabilities are averaged into the fold's arrays once the last is done (comp.seeds). Several processes (`--fold k` on machines that share the workspace, or plain
`comp train` twice) share a run through the locks of :mod:`comp.locks`: the config is checked and
run.yaml written under the run lock, each fold is trained under its own lock, and whoever finishes
the last fold assembles oof.parquet, test.parquet, scores.json and thresholds.json from all folds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from comp.atomic import write_json, write_npy
from comp.config import to_dict
from comp.data import Competition, load_competition
from comp.errors import ConfigError, RunError
from comp.evaluation import OofScores, evaluate_oof
from comp.fingerprint import PARTS, data_fingerprint
from comp.folds import file_hash, load_folds, make_folds, write_folds
from comp.locks import FoldLock, busy_folds, fold_holder, run_lock
from comp.models import get_family, load_model_config, preflight
from comp.models.base import FoldContext, TaskInfo
from comp.runs import (
    RunLog,
    git_commit,
    is_main_process,
    now,
    package_versions,
    read_run_yaml,
    stale_data_error,
    write_run_outputs,
    write_run_yaml,
)
from comp.workspace import CompSettings, RunPaths, Workspace, check_folds


@dataclass
class TrainResult:
    run: str
    trained: list[int]  # folds trained by this call
    skipped: list[int]  # folds already done
    pending: list[int]  # folds still missing (trained elsewhere with --fold)
    scores: OofScores | None  # set once every fold is done
    fold_seconds: dict[int, float]
    busy: dict[str, str] = field(default_factory=dict)  # tasks another process was training ("fold 2"): who
    notes: list[str] = field(default_factory=list)  # what this call decided on its own (a replaced run, ...)
    optimistic: str | None = None  # why the run's CV is optimistic (a student distilled from OOF), or None


def task_info(settings: CompSettings) -> TaskInfo:
    negative = str(settings.classes[0]) if settings.task == "binary" else None
    return TaskInfo(settings.task, settings.output_names, settings.metric, settings.min_labels, negative)


def ensure_folds(ws: Workspace, comp: Competition, n_folds: int, seed: int, log: Callable[[str], None]) -> tuple[Path, np.ndarray]:
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


def run_digest(config: dict[str, Any], folds: dict[str, Any], data: dict[str, Any],
               teachers: dict[str, Any] | None = None) -> str:
    """What identifies a run's folds as belonging together: config, fold file and data (and the
    teachers' identities for a student of comp.second_stage), hashed."""
    identity = {"config": config, "folds": folds,
                "data": {"columns": data.get("columns"), **{f"{s}.{p}": (data.get(s) or {}).get(p) for s, p in PARTS}}}
    if teachers:
        identity["teachers"] = teachers
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _difference(paths: RunPaths, record: dict[str, Any], config: dict[str, Any], defaults: dict[str, Any],
                fold_file: str, fold_hash: str, data: dict[str, Any],
                teachers: dict[str, Any] | None = None) -> RunError | None:
    """Why the run in run.yaml is not the one asked for now, or None when it is the same run."""
    # a key the family gained after the run started counts as unchanged while it keeps its default
    old_config = {**{k: v for k, v in defaults.items() if k not in record.get("config", {})}, **record.get("config", {})}
    if old_config != config:
        changed = sorted(k for k in set(old_config) | set(config) if old_config.get(k) != config.get(k))
        detail = ", ".join(f"{k}: {old_config.get(k)!r} -> {config.get(k)!r}" for k in changed[:3])
        return RunError(
            f"run '{paths.name}' already exists with a different config ({detail}); pass --force to retrain it "
            "or --name NEW to keep both"
        )
    from comp.second_stage import describe_change

    changed_teacher = describe_change(paths.name, record.get("second_stage"), teachers)
    if changed_teacher is not None:
        return changed_teacher
    old = record.get("folds", {})
    if old.get("file") != fold_file or old.get("hash") != fold_hash:
        return RunError(
            f"run '{paths.name}' was trained on {old.get('file')} (hash {str(old.get('hash'))[:8]}), not on "
            f"{fold_file} (hash {fold_hash[:8]}); pass --force to retrain it or --name NEW to keep both"
        )
    if not isinstance(record.get("data"), dict):
        return RunError(
            f"run '{paths.name}' records no data fingerprint (it was made by an older comp), so its finished folds "
            "cannot be checked against the data; retrain with --force or --name NEW"
        )
    return stale_data_error(paths.name, record["data"], data)


def _done_folds(paths: RunPaths, n_folds: int) -> list[int]:
    """Folds with a done marker, or with one seed's (a run of several seeds may have no whole fold yet)."""
    return [k for k in range(n_folds) if paths.fold_done(k).is_file() or any(paths.fold_dir(k).glob("seed-*/done.json"))]


def _describe_busy(busy: dict) -> str:
    return "; ".join(f"fold {k}: {owner.describe()}" for k, owner in sorted(busy.items()))


def _clear_run(paths: RunPaths, folds: list[int]) -> None:
    """Remove the given folds' files and the assembled outputs (the caller holds the run lock and has
    checked that no other process trains these folds)."""
    for k in folds:
        shutil.rmtree(paths.fold_dir(k), ignore_errors=True)
    for output in (paths.oof, paths.test, paths.scores, paths.thresholds):
        output.unlink(missing_ok=True)


def _prepare_run(paths: RunPaths, new_record: dict[str, Any], defaults: dict[str, Any], n_folds: int,
                 selected: list[int], force: bool, log: RunLog, notes: list[str]) -> dict[str, Any]:
    """Under the run lock: check the run against run.yaml (or replace it) and write run.yaml."""
    existing = read_run_yaml(paths) if paths.exists else None
    old_folds = int((existing or {}).get("folds", {}).get("n_folds") or 0)
    every_fold = range(max(old_folds, n_folds))
    problem = None
    if existing is not None:
        problem = _difference(paths, existing, new_record["config"], defaults, new_record["folds"]["file"],
                              new_record["folds"]["hash"], new_record["data"], new_record.get("second_stage"))
    if problem is not None:
        busy = busy_folds(paths.dir, every_fold)
        if busy:
            raise RunError(f"{problem.args[0].split(';')[0]}, and another process is training it "
                           f"({_describe_busy(busy)}); let it finish, or pass --name NEW to train beside it")
        if not force and _done_folds(paths, old_folds):
            raise problem
        # another run under this name, with no finished fold (or --force): this one replaces it
        _clear_run(paths, list(every_fold))
        if not force:
            note = f"replaced run '{paths.name}', which had no finished fold ({problem.args[0].split('(', 1)[-1].split(')')[0]})"
            notes.append(note)
            log(note)
        existing = None
    elif force:
        busy = busy_folds(paths.dir, selected)
        if busy:
            raise RunError(f"run '{paths.name}' is being trained by another process ({_describe_busy(busy)}); "
                           "let it finish (or stop it) before retraining with --force")
        _clear_run(paths, selected)
    record = dict(new_record)
    if existing is not None:  # the same run: keep its identity and history
        record["digest"] = existing.get("digest", record["digest"])
        record["data"] = {**record["data"], "recorded": existing["data"].get("recorded", record["data"]["recorded"])}
        record["created"] = existing.get("created", record["created"])
        for key in ("completed", "seconds"):
            if key in existing:
                record[key] = existing[key]
    write_run_yaml(paths, record)
    return record


def _dir_state(directory: Path, digest: str, n_valid: int, n_test: int, n_outputs: int) -> str:
    """State of a fold's (or one seed's) folder: ``done`` (complete, this run's), ``missing``,
    ``other`` (another config's) or ``damaged: why``."""
    marker = directory / "done.json"
    if not marker.is_file():
        return "missing"
    try:
        facts = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"damaged: {marker.name} is unreadable"
    if facts.get("digest", digest) != digest:
        return "other"
    scored = facts.get("scored_rows", n_valid)  # a partial OOF (score_rows) leaves whole rows NaN
    for path, shape in ((directory / "oof.npy", (n_valid, n_outputs)), (directory / "test.npy", (n_test, n_outputs))):
        try:
            array = np.load(path)
        except (OSError, ValueError, EOFError) as exc:
            return f"damaged: {path.name} is unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        expected = scored if path.name == "oof.npy" else n_test
        if array.shape != shape or not _whole_rows(array, expected):
            return f"damaged: {path.name} has shape {array.shape} or non-finite values, expected {shape}"
    return "done"


def _whole_rows(values: np.ndarray, n_scored: int) -> bool:
    """Whether exactly ``n_scored`` rows are finite and every other row is NaN throughout."""
    finite = np.isfinite(values)
    rows = finite.all(axis=1)
    return int(rows.sum()) == n_scored and not finite[~rows].any()


def _fold_state(paths: RunPaths, k: int, digest: str, n_valid: int, n_test: int, n_outputs: int) -> str:
    return _dir_state(paths.fold_dir(k), digest, n_valid, n_test, n_outputs)


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
    record: dict[str, Any]
    log: RunLog
    main: bool
    notes: list[str] = field(default_factory=list)
    stage: Any = None  # comp.second_stage.SecondStage of a student (pseudo_labels / distill), else None

    @property
    def digest(self) -> str:
        return self.record["digest"]

    @property
    def n_seeds(self) -> int:
        return int(getattr(self.config, "seeds", 1))

    def shape(self, k: int) -> tuple[int, int, int]:
        return int((self.folds == k).sum()), len(self.comp.test_texts), self.task.n_outputs

    def fold_state(self, k: int) -> str:
        return _fold_state(self.paths, k, self.digest, *self.shape(k))

    def unit_dir(self, unit: Unit) -> Path:
        return self.paths.task_dir(unit.fold, unit.seed, unit.n_seeds)

    def unit_state(self, unit: Unit) -> str:
        return _dir_state(self.unit_dir(unit), self.digest, *self.shape(unit.fold))

    def units(self, folds: list[int] | None = None, seed_index: int | None = None) -> list[Unit]:
        seeds = range(self.n_seeds) if seed_index is None else [seed_index]
        return [Unit(k, s, self.n_seeds) for k in (range(self.n_folds) if folds is None else folds) for s in seeds]

    def missing_units(self, folds: list[int] | None = None) -> list[Unit]:
        """The tasks still to train (of ``folds``): not done, in folds that are not done."""
        return [u for u in self.units(folds) if self.fold_state(u.fold) != "done" and self.unit_state(u) != "done"]

    def pending_folds(self) -> list[int]:
        return [k for k in range(self.n_folds) if self.fold_state(k) != "done"]


def prepare_run(ws: Workspace, config_path: Path, *, n_folds: int | None = None, seed: int | None = None,
                overrides: list[str] | None = None, name: str | None = None, force: bool = False,
                selected: list[int] | None = None, echo: Callable[[str], None] | None = None) -> RunPlan:
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
        expected_record = {"file": ws.relative(expected), "hash": file_hash(expected) if expected.exists() else "none"}
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
    fold_record = {"file": ws.relative(fold_path), "hash": file_hash(fold_path), "n_folds": n_folds, "seed": seed,
                   "group_column": settings.group_column}
    data = data_fingerprint(comp, now())
    new_record = {
        "name": run_name,
        "kind": "model",
        "model": config.model,
        "config": config_dict,
        "config_file": ws.relative(Path(config_path)),
        "folds": fold_record,
        "competition": {"slug": settings.competition, "task": settings.task, "metric": settings.metric,
                        "classes": settings.output_names},
        "data": data,
        **({"second_stage": stage.record} if stage is not None else {}),
        **({"cv_optimistic": True, "cv_optimistic_reason": stage.optimistic} if stage and stage.optimistic else {}),
        "digest": run_digest(config_dict, fold_record, data, stage.record if stage is not None else None),
        "versions": package_versions(),
        "git_commit": git_commit(ws.root),
        "created": now(),
    }
    notes: list[str] = []
    if main:
        with run_lock(paths.dir):
            record = _prepare_run(paths, new_record, to_dict(family.Config()), n_folds,
                                  list(range(n_folds)) if selected is None else selected, force, log, notes)
        log(f"run {run_name}: model {config.model}, {n_folds} folds from {fold_record['file']}"
            + (f", {config.seeds} seeds per fold" if config.seeds > 1 else ""))
        log(f"config: {config_dict}", echo=False)
    else:
        record = _wait_for_run_yaml(paths)
    if stage is not None and stage.optimistic:
        log.warn(f"run {run_name}: its CV will be optimistic: {stage.optimistic}")
    return RunPlan(ws, paths, config, family, task, comp, folds, n_folds, seed, record, log, main, notes, stage)


def check_seeds(config) -> None:
    seeds = getattr(config, "seeds", 1)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be 1 or more (models averaged per fold), got {seeds!r}")


def train(ws: Workspace, config_path: Path, *, n_folds: int | None = None, seed: int | None = None,
          only_fold: int | None = None, only_folds: list[int] | None = None, seed_index: int | None = None,
          seeds: int | None = None, overrides: list[str] | None = None, name: str | None = None,
          force: bool = False, wait: bool = False, echo: Callable[[str], None] | None = None,
          on_fold: Callable[[RunPlan, int], None] | None = None,
          on_epoch: Callable[[int, float, float], None] | None = None) -> TrainResult:
    """Train (or resume) run ``name`` (default: the config's file stem) out-of-fold.

    ``only_fold`` / ``only_folds`` train those folds; ``seed_index`` only that seed of them (with
    ``seeds: N``); ``seeds`` overrides the config's. ``wait``: a task another process is training is
    waited for rather than skipped. Hooks for a tuner: ``on_fold(plan, k)`` once fold k is complete
    (trained here or before), ``on_epoch(k, epoch, score)`` from families that report epochs; either
    may raise to stop the run (the fold lock is released, finished folds are kept).
    """
    overrides = [*(overrides or []), *([f"seeds={seeds}"] if seeds is not None else [])]
    selected = [only_fold] if only_fold is not None else (sorted(set(only_folds)) if only_folds else None)
    plan = prepare_run(ws, config_path, n_folds=n_folds, seed=seed, overrides=overrides, name=name, force=force,
                       selected=selected, echo=echo)
    if seed_index is not None and not 0 <= seed_index < plan.n_seeds:
        raise RunError(f"--seed-index {seed_index} is out of range: run '{plan.paths.name}' has seeds "
                       f"0..{plan.n_seeds - 1} (seeds: {plan.n_seeds})")
    trained, skipped, busy = train_units(plan, plan.units(selected, seed_index), wait, on_fold, on_epoch)
    pending, scores = finish_run(plan)
    fold_seconds = {k: float(s) for k, s in fold_facts(plan.paths, plan.n_folds, "seconds").items() if s is not None}
    return TrainResult(plan.paths.name, trained, skipped, pending, scores, fold_seconds, busy, plan.notes,
                       plan.record.get("cv_optimistic_reason") if plan.record.get("cv_optimistic") else None)


def train_units(plan: RunPlan, units: list[Unit], wait: bool = False,
                on_fold: Callable[[RunPlan, int], None] | None = None,
                on_epoch: Callable[[int, float, float], None] | None = None) -> tuple[list[int], list[int], dict]:
    """Train ``units`` (those not done), each under its lock. Returns the folds trained here, the
    folds found done, and the tasks another process was training: {label: who}."""
    paths = plan.paths
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    trained, skipped, busy = [], [], {}
    for k in dict.fromkeys(u.fold for u in units):
        if plan.fold_state(k) == "done":
            skipped.append(k)
            if on_fold is not None:
                on_fold(plan, k)
            continue
        for unit in (u for u in units if u.fold == k):
            if not plan.main:  # rank 0 holds the locks for the whole launch; the other ranks follow its tasks
                if plan.unit_state(unit) != "done":
                    train_fold(plan, unit, on_epoch)
                    trained.append(k)
                continue
            lock = _claim(plan, unit, wait)
            if lock is None:
                continue
            if not isinstance(lock, FoldLock):
                if distributed:
                    raise RunError(f"{unit.label} of run '{paths.name}' is being trained by another process "
                                   f"({lock.describe()}); a multi-GPU launch cannot skip a fold: wait for it, or "
                                   "launch with --fold")
                busy[unit.label] = lock.describe()
                plan.log(f"{unit.label}: skipped, another process is training it ({lock.describe()})")
                continue
            with lock:
                train_fold(plan, unit, on_epoch)
            trained.append(k)
        if plan.n_seeds > 1 and plan.main:
            complete_fold(plan, k)
        if k not in trained and plan.fold_state(k) == "done":
            skipped.append(k)  # done by another process meanwhile (e.g. the one --wait waited for)
        if on_fold is not None and plan.fold_state(k) == "done":
            on_fold(plan, k)
    return list(dict.fromkeys(trained)), skipped, busy


def finish_run(plan: RunPlan) -> tuple[list[int], OofScores | None]:
    """The folds still missing, and the scores once none is: whoever finds every fold done
    assembles the run (under the run lock)."""
    if plan.main and plan.n_seeds > 1:  # a task that died between its seed's marker and the fold's
        for k in range(plan.n_folds):
            complete_fold(plan, k)
    pending = plan.pending_folds()
    if pending or not plan.main:
        return pending, None
    with run_lock(plan.paths.dir):
        _check_still_ours(plan.paths, plan.digest)
        return [], assemble(plan.ws, plan.paths, plan.comp, plan.folds, plan.log, n_seeds=plan.n_seeds)


def _wait_for_run_yaml(paths: RunPaths, timeout: float = 600.0) -> dict[str, Any]:
    """On a non-zero rank: run.yaml as rank 0 writes it at the start of the launch."""
    started = time.monotonic()
    while not paths.exists and time.monotonic() - started < timeout:
        time.sleep(0.5)
    return read_run_yaml(paths)


def _check_still_ours(paths: RunPaths, digest: str) -> None:
    record = read_run_yaml(paths)
    if record.get("digest") != digest:
        raise RunError(
            f"run '{paths.name}' was replaced by another process (another config, fold file or data, with --force) "
            "while this one was training; nothing more was written by this one: check `comp runs`"
        )


def _claim(plan: RunPlan, unit: Unit, wait: bool):
    """The task's lock to train it, None when it (or its fold) is done, or the Owner training it elsewhere."""
    paths, k = plan.paths, unit.fold
    with run_lock(paths.dir):
        _check_still_ours(paths, plan.digest)
        if plan.fold_state(k) == "done" or (state := plan.unit_state(unit)) == "done":
            return None
        lock = FoldLock(paths.dir, k, unit.lock_seed)
        if lock.acquire(0):
            # the holder may have written its done marker and let go between the check above and now
            if plan.fold_state(k) == "done" or (state := plan.unit_state(unit)) == "done":
                lock.release()
                return None
            _prepare_unit(plan, unit, state)
            return lock
    owner = fold_holder(paths.dir, k, unit.lock_seed)
    if not wait:
        return owner if owner is not None else _claim(plan, unit, wait)
    plan.log(f"{unit.label}: waiting for the process training it ({owner.describe() if owner else 'gone'})")
    lock.acquire(None)
    with run_lock(paths.dir):
        _check_still_ours(paths, plan.digest)
        if plan.fold_state(k) == "done" or (state := plan.unit_state(unit)) == "done":
            lock.release()
            return None
        _prepare_unit(plan, unit, state)
        return lock


def _prepare_unit(plan: RunPlan, unit: Unit, state: str) -> None:
    """Before (re)training a task: drop what a damaged attempt, or one of another config, left in its
    folder (an interrupted attempt of this run keeps its checkpoints, to resume inside the fold)."""
    if state.startswith("damaged"):
        plan.log.warn(f"{unit.label}: {state.removeprefix('damaged: ')}; retraining {unit.label}")
    if state != "missing":
        shutil.rmtree(plan.unit_dir(unit), ignore_errors=True)


def train_fold(plan: RunPlan, unit: Unit, on_epoch: Callable[[int, float, float], None] | None = None) -> float:
    """Fit one task (fold, seed) on the other folds' rows and save its validation and test probabilities."""
    from comp.seeds import task_seed

    config, task, comp, log, k = plan.config, plan.task, plan.comp, plan.log, unit.fold
    started = time.perf_counter()
    train_rows, valid_rows = np.flatnonzero(plan.folds != k), np.flatnonzero(plan.folds == k)
    texts = comp.train_texts
    out = plan.unit_dir(unit)
    log(f"{unit.label}: training on {len(train_rows)} rows, validating on {len(valid_rows)}")
    context = FoldContext(fold=k, seed=task_seed(plan.seed, k, unit.seed), cache_dir=plan.ws.cache_dir, fold_dir=out,
                          log=log, warn=log.warn, is_main_process=plan.main, positions=(train_rows, valid_rows),
                          on_epoch=None if on_epoch is None else (lambda epoch, value: on_epoch(k, epoch, value)))
    model = plan.family.Model(config, task, context)
    valid_texts = [texts[i] for i in valid_rows]
    if plan.stage is None:
        fit_texts, fit_Y, extra_fit, stage_facts = [texts[i] for i in train_rows], comp.Y[train_rows], {}, {}
    else:  # a student: soft targets and pseudo-labelled rows from its teachers' fold-k models
        plan.stage.check_unchanged(plan.paths.name)
        rows = plan.stage.fold_rows(k, train_rows, texts, comp.Y, log, log.warn)
        fit_texts, fit_Y, stage_facts = rows.texts, rows.Y, rows.facts
        extra_fit = {} if rows.sample_weight is None else {"sample_weight": rows.sample_weight}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(fit_texts, fit_Y, valid=(valid_texts, comp.Y[valid_rows]), **extra_fit)
        predict_oof = getattr(model, "predict_oof", model.predict_proba)  # may leave rows unscored (NaN)
        oof = np.asarray(predict_oof(valid_texts), dtype=np.float64)
        test = np.asarray(model.predict_proba(comp.test_texts), dtype=np.float64)
    # library warnings (e.g. a solver that did not converge) belong in train.log, once per message
    for message in dict.fromkeys(f"{unit.label}: {w.category.__name__}: {str(w.message).splitlines()[0]}"
                                 for w in caught if not issubclass(w.category, DeprecationWarning | FutureWarning)):
        log.warn(message)
    expected = (len(valid_rows), task.n_outputs)
    if oof.shape != expected or test.shape != (len(comp.test_texts), task.n_outputs):
        raise RunError(f"model '{config.model}' returned probabilities of shape {oof.shape}, expected {expected}")
    scored = np.isfinite(oof).all(axis=1)
    if hasattr(model, "predict_oof") and scored.any() and not np.isfinite(oof[~scored]).any():
        checked = (("validation", oof[scored]), ("test", test))  # a partial OOF: unscored rows are NaN throughout
    else:
        checked, scored = (("validation", oof), ("test", test)), np.ones(len(oof), dtype=bool)
    for name, values in checked:
        if not np.isfinite(values).all() or values.min() < -1e-6 or values.max() > 1 + 1e-6:
            raise RunError(f"{unit.label}: model '{config.model}' returned {name} probabilities that are NaN or "
                           "outside [0, 1]; nothing was saved for this fold (check the config, e.g. a learning rate "
                           "too high)")
    seconds = time.perf_counter() - started
    if plan.main:
        if config.save_models:
            # adapter families (LoRA, IA3) keep only adapter + head, with the base model's id
            adapter = getattr(model, "saves_adapter", False)
            model.save(out / ("adapter" if adapter else "model"))
        write_npy(out / "oof.npy", oof)
        write_npy(out / "test.npy", test)
        facts = {"fold": k, **({"seed": unit.seed, "seed_value": context.seed} if unit.n_seeds > 1 else {}),
                 "seconds": round(seconds, 2), "train_rows": len(train_rows), "valid_rows": len(valid_rows),
                 **stage_facts, "finished": now(), "host": socket.gethostname(), "pid": os.getpid(), "digest": plan.digest,
                 **({} if scored.all() else {"scored_rows": int(scored.sum())})}
        # the marker is written last: its presence means the task's arrays are complete
        write_json(out / "done.json", facts)
    log(f"{unit.label}: done in {seconds:.1f}s")
    return seconds


def complete_fold(plan: RunPlan, k: int) -> bool:
    """With several seeds: once every seed of fold ``k`` is done, write the fold's mean arrays and its
    done.json (under the run lock, by whichever process finds the last seed done). True when the fold
    is done."""
    from comp.seeds import mean_of

    if plan.fold_state(k) == "done":
        return True
    units = plan.units([k])
    if any(plan.unit_state(u) != "done" for u in units):
        return False
    paths = plan.paths
    with run_lock(paths.dir):
        _check_still_ours(paths, plan.digest)
        if plan.fold_state(k) == "done":
            return True
        dirs = [plan.unit_dir(u) for u in units]
        facts = [json.loads((d / "done.json").read_text(encoding="utf-8")) for d in dirs]
        write_npy(paths.fold_oof(k), mean_of([np.load(d / "oof.npy") for d in dirs]))
        write_npy(paths.fold_test(k), mean_of([np.load(d / "test.npy") for d in dirs]))
        write_json(paths.fold_done(k), {"fold": k, "seeds": len(units), "seconds": round(sum(f["seconds"] for f in facts), 2),
                                        "train_rows": facts[0]["train_rows"], "valid_rows": facts[0]["valid_rows"],
                                        "finished": now(), "host": socket.gethostname(), "pid": os.getpid(),
                                        "digest": plan.digest,
                                        **({"scored_rows": facts[0]["scored_rows"]} if "scored_rows" in facts[0] else {})})
    plan.log(f"fold {k}: {len(units)} seeds averaged")
    return True


def fold_facts(paths: RunPaths, n_folds: int, key: str) -> dict[int, Any]:
    """One field of every fold's done.json (seconds, finished, host, ...), by fold."""
    out = {}
    for k in range(n_folds):
        try:
            out[k] = json.loads(paths.fold_done(k).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError):
            continue
    return out


def assemble(ws: Workspace, paths: RunPaths, comp: Competition, folds: np.ndarray, log: RunLog,
             n_seeds: int = 1) -> OofScores:
    """Gather every fold's arrays (whichever process trained them) into the run's files and score the OOF.
    The caller holds the run lock."""
    settings = comp.settings
    n_folds = int(folds.max()) + 1
    oof = np.zeros((len(folds), len(settings.output_names)))
    test = np.zeros((len(comp.test_texts), len(settings.output_names)))
    for k in range(n_folds):
        oof[folds == k] = np.load(paths.fold_oof(k))
        test += np.load(paths.fold_test(k)) / n_folds
    scored = np.isfinite(oof).all(axis=1)
    # a partial OOF (the prompt family's score_rows) is scored on its scored rows only, and marked
    scores = evaluate_oof(oof[scored], comp.Y[scored], folds[scored], settings.task, settings.metric,
                          settings.min_labels)
    partial = None if scored.all() else {"scored_rows": int(scored.sum()), "train_rows": len(scored)}
    fold_seconds = {k: v for k, v in fold_facts(paths, n_folds, "seconds").items() if isinstance(v, int | float)}
    for row in scores.per_fold:
        row["seconds"] = fold_seconds.get(row["fold"])
    total = round(sum(fold_seconds.values()), 2)
    extra = {"task": settings.task, "n_folds": n_folds, "seconds": total, **({"partial_oof": partial} if partial else {})}
    record = read_run_yaml(paths)
    if record.get("cv_optimistic"):  # a student distilled from OOF predictions (comp.second_stage)
        extra.update({"cv_optimistic": True, "cv_optimistic_reason": record.get("cv_optimistic_reason")})
    if n_seeds > 1:
        from comp.seeds import seed_spread

        per_seed = []
        for s in range(n_seeds):
            seed_oof = np.zeros_like(oof)
            for k in range(n_folds):
                seed_oof[folds == k] = np.load(paths.seed_dir(k, s) / "oof.npy")
            per_seed.append(seed_oof)
        extra["seeds"] = seed_spread([o[scored] for o in per_seed], comp.Y[scored], folds[scored], settings, scores)
    write_run_outputs(paths, settings.id_column, settings.output_names, comp.train_ids, folds, oof, comp.test_ids, test,
                      scores.scores_json(extra),
                      scores.thresholds_json(settings.output_names, settings.task, settings.min_labels))
    record.update({"completed": now(), "seconds": total})
    record.pop("partial_oof", None)
    if partial:
        record["partial_oof"] = partial
    write_run_yaml(paths, record)
    on = f" on {partial['scored_rows']} of {partial['train_rows']} rows (partial OOF: not blendable)" if partial else ""
    log(f"cv {settings.metric}{on}: at 0.5 {scores.at_05:.4f}, tuned {scores.tuned:.4f}, honest {scores.honest:.4f}"
        + (f" (optimistic: {record.get('cv_optimistic_reason')})" if record.get("cv_optimistic") else ""))
    if n_seeds > 1:
        from comp.seeds import describe_spread

        log(describe_spread(extra["seeds"], settings.metric))
    return scores
