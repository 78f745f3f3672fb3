"""The out-of-fold loop: for each fold, fit on the other folds, predict the held-out rows and test.

Before anything is written, comp.yaml, the config and the family's ``preflight`` are checked, so a
bad value stops the run with one line instead of failing inside fold 0. Each finished fold leaves its
arrays and then a done marker; a re-run skips finished folds, so an interrupted run continues where
it stopped. With ``seeds: N`` a fold is N tasks (one per seed, fold-<k>/seed-<s>/, each with its own
marker) whose probabilities are averaged into the fold's arrays once the last is done (comp.seeds).
Several processes (`--fold k` on machines that share the workspace, or plain `comp train` twice)
share a run through the locks of :mod:`comp.locks`: the config is checked and run.yaml written under
the run lock, each fold is trained under its own lock, and whoever finishes the last fold assembles
oof.parquet, test.parquet, scores.json and thresholds.json from all folds.

The steps live in modules of their own: comp.run_plan (checks, run.yaml), comp.fold_fit (one task),
comp.fold_state (done markers), comp.assemble (the run's files); this one drives them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from comp.assemble import assemble
from comp.errors import RunError
from comp.evaluation import OofScores
from comp.fold_fit import complete_fold, train_fold
from comp.fold_state import fold_facts
from comp.locks import FoldLock, fold_holder, run_lock
from comp.run_identity import check_still_ours, run_digest
from comp.run_plan import RunPlan, Unit, check_seeds, ensure_folds, prepare_run, task_info
from comp.workspace import Workspace

# the names callers (executors, tune, tests) take from comp.train
__all__ = [
    "RunPlan",
    "TrainResult",
    "Unit",
    "assemble",
    "check_seeds",
    "complete_fold",
    "ensure_folds",
    "finish_run",
    "fold_facts",
    "prepare_run",
    "run_digest",
    "task_info",
    "train",
    "train_fold",
    "train_units",
]


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


def train(
    ws: Workspace,
    config_path: Path,
    *,
    n_folds: int | None = None,
    seed: int | None = None,
    only_fold: int | None = None,
    only_folds: list[int] | None = None,
    seed_index: int | None = None,
    seeds: int | None = None,
    overrides: list[str] | None = None,
    name: str | None = None,
    force: bool = False,
    wait: bool = False,
    echo: Callable[[str], None] | None = None,
    on_fold: Callable[[RunPlan, int], None] | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainResult:
    """Train (or resume) run ``name`` (default: the config's file stem) out-of-fold.

    ``only_fold`` / ``only_folds`` train those folds; ``seed_index`` only that seed of them (with
    ``seeds: N``); ``seeds`` overrides the config's. ``wait``: a task another process is training is
    waited for rather than skipped. Hooks for a tuner: ``on_fold(plan, k)`` once fold k is complete
    (trained here or before), ``on_epoch(k, epoch, score)`` from families that report epochs; either
    may raise to stop the run (the fold lock is released, finished folds are kept).
    """
    overrides = [*(overrides or []), *([f"seeds={seeds}"] if seeds is not None else [])]
    selected = [only_fold] if only_fold is not None else (sorted(set(only_folds)) if only_folds else None)
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
    if seed_index is not None and not 0 <= seed_index < plan.n_seeds:
        raise RunError(
            f"--seed-index {seed_index} is out of range: run '{plan.paths.name}' has seeds "
            f"0..{plan.n_seeds - 1} (seeds: {plan.n_seeds})"
        )
    trained, skipped, busy = train_units(plan, plan.units(selected, seed_index), wait, on_fold, on_epoch)
    pending, scores = finish_run(plan)
    fold_seconds = {k: float(s) for k, s in fold_facts(plan.paths, plan.n_folds, "seconds").items() if s is not None}
    return TrainResult(
        plan.paths.name,
        trained,
        skipped,
        pending,
        scores,
        fold_seconds,
        busy,
        plan.notes,
        plan.record.cv_optimistic_reason if plan.record.cv_optimistic else None,
    )


def train_units(
    plan: RunPlan,
    units: list[Unit],
    wait: bool = False,
    on_fold: Callable[[RunPlan, int], None] | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> tuple[list[int], list[int], dict]:
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
                    raise RunError(
                        f"{unit.label} of run '{paths.name}' is being trained by another process "
                        f"({lock.describe()}); a multi-GPU launch cannot skip a fold: wait for it, or "
                        "launch with --fold"
                    )
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
        check_still_ours(plan.paths, plan.digest)
        return [], assemble(plan.ws, plan.paths, plan.comp, plan.folds, plan.log, n_seeds=plan.n_seeds)


def _claim(plan: RunPlan, unit: Unit, wait: bool):
    """The task's lock to train it, None when it (or its fold) is done, or the Owner training it elsewhere."""
    paths, k = plan.paths, unit.fold
    with run_lock(paths.dir):
        check_still_ours(paths, plan.digest)
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
        check_still_ours(paths, plan.digest)
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
