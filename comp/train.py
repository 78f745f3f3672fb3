"""The out-of-fold loop: for each fold, fit on the other folds, predict the held-out rows and test.

Before anything is written, comp.yaml, the config and the family's ``preflight`` are checked, so a
bad value stops the run with one line instead of failing inside fold 0. Each finished fold leaves its
arrays and then a done marker; a re-run skips finished folds, so an interrupted run continues where
it stopped. Several processes (`--fold k` on machines that share the workspace, or plain
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
from comp.config import load_model_config, to_dict
from comp.data import Competition, load_competition
from comp.errors import ConfigError, RunError
from comp.evaluation import OofScores, evaluate_oof
from comp.fingerprint import PARTS, data_fingerprint
from comp.folds import file_hash, load_folds, make_folds, write_folds
from comp.locks import FoldLock, busy_folds, fold_holder, run_lock
from comp.models import get_family, preflight
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
    busy: dict[int, str] = field(default_factory=dict)  # folds another process was training: who
    notes: list[str] = field(default_factory=list)  # what this call decided on its own (a replaced run, ...)


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


def run_digest(config: dict[str, Any], folds: dict[str, Any], data: dict[str, Any]) -> str:
    """What identifies a run's folds as belonging together: config, fold file and data, hashed."""
    identity = {"config": config, "folds": folds,
                "data": {"columns": data.get("columns"), **{f"{s}.{p}": (data.get(s) or {}).get(p) for s, p in PARTS}}}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _difference(paths: RunPaths, record: dict[str, Any], config: dict[str, Any], defaults: dict[str, Any],
                fold_file: str, fold_hash: str, data: dict[str, Any]) -> RunError | None:
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
    return [k for k in range(n_folds) if paths.fold_done(k).is_file()]


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
                              new_record["folds"]["hash"], new_record["data"])
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


def _fold_state(paths: RunPaths, k: int, digest: str, n_valid: int, n_test: int, n_outputs: int) -> str:
    """``done`` (complete, this run's), ``missing``, ``other`` (another config's) or ``damaged: why``."""
    marker = paths.fold_done(k)
    if not marker.is_file():
        return "missing"
    try:
        facts = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"damaged: {marker.name} is unreadable"
    if facts.get("digest", digest) != digest:
        return "other"
    scored = facts.get("scored_rows", n_valid)  # a partial OOF (score_rows) leaves whole rows NaN
    for path, shape in ((paths.fold_oof(k), (n_valid, n_outputs)), (paths.fold_test(k), (n_test, n_outputs))):
        try:
            array = np.load(path)
        except (OSError, ValueError, EOFError) as exc:
            return f"damaged: {path.name} is unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        expected = scored if path == paths.fold_oof(k) else n_test
        if array.shape != shape or not _whole_rows(array, expected):
            return f"damaged: {path.name} has shape {array.shape} or non-finite values, expected {shape}"
    return "done"


def _whole_rows(values: np.ndarray, n_scored: int) -> bool:
    """Whether exactly ``n_scored`` rows are finite and every other row is NaN throughout."""
    finite = np.isfinite(values)
    rows = finite.all(axis=1)
    return int(rows.sum()) == n_scored and not finite[~rows].any()


def train(ws: Workspace, config_path: Path, *, n_folds: int | None = None, seed: int | None = None,
          only_fold: int | None = None, overrides: list[str] | None = None, name: str | None = None,
          force: bool = False, wait: bool = False, echo: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or resume) run ``name`` (default: the config's file stem) out-of-fold.

    ``only_fold`` trains one fold; ``wait``: a fold another process is training is waited for rather
    than skipped.
    """
    settings = ws.load_settings()
    settings.require_schema()
    config = load_model_config(config_path, overrides)
    family = get_family(config.model)
    task = task_info(settings)
    try:
        preflight(family, config, task)
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    run_name = name or Path(config_path).stem
    paths = ws.run(run_name)
    n_folds = check_folds(n_folds, settings)
    seed = settings.seed if seed is None else seed
    if only_fold is not None and not 0 <= only_fold < n_folds:
        raise RunError(f"--fold {only_fold} is out of range: folds are 0..{n_folds - 1}")
    main = is_main_process()
    log = RunLog(paths.log if main else None, echo if main else None)

    comp = load_competition(ws, settings)
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
        "digest": run_digest(config_dict, fold_record, data),
        "versions": package_versions(),
        "git_commit": git_commit(ws.root),
        "created": now(),
    }
    selected = [only_fold] if only_fold is not None else list(range(n_folds))
    notes: list[str] = []
    if main:
        with run_lock(paths.dir):
            record = _prepare_run(paths, new_record, to_dict(family.Config()), n_folds, selected, force, log, notes)
        log(f"run {run_name}: model {config.model}, {n_folds} folds from {fold_record['file']}")
        log(f"config: {config_dict}", echo=False)
    else:
        record = _wait_for_run_yaml(paths)
    digest = record["digest"]

    shapes = {k: (int((folds == k).sum()), len(comp.test_texts), task.n_outputs) for k in range(n_folds)}
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    trained, skipped, busy = [], [], {}
    for k in selected:
        if not main:  # rank 0 holds the locks for the whole launch; the other ranks follow its folds
            if _fold_state(paths, k, digest, *shapes[k]) == "done":
                skipped.append(k)
                continue
            train_fold(family, config, task, comp, folds, k, seed, ws, paths, log, main, digest=digest)
            trained.append(k)
            continue
        lock = _claim_fold(paths, k, digest, shapes[k], wait, log)
        if lock is None:
            skipped.append(k)
            continue
        if not isinstance(lock, FoldLock):
            if distributed:
                raise RunError(f"fold {k} of run '{run_name}' is being trained by another process ({lock.describe()}); "
                               "a multi-GPU launch cannot skip a fold: wait for it, or launch with --fold")
            busy[k] = lock.describe()
            log(f"fold {k}: skipped, another process is training it ({lock.describe()})")
            continue
        with lock:
            train_fold(family, config, task, comp, folds, k, seed, ws, paths, log, main, digest=digest)
        trained.append(k)

    pending = [k for k in range(n_folds) if _fold_state(paths, k, digest, *shapes[k]) != "done"]
    scores = None
    if not pending and main:
        with run_lock(paths.dir):
            _check_still_ours(paths, digest)
            scores = assemble(ws, paths, comp, folds, log)
    fold_seconds = {k: float(s) for k, s in _fold_facts(paths, n_folds, "seconds").items() if s is not None}
    return TrainResult(run_name, trained, skipped, pending, scores, fold_seconds, busy, notes)


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


def _claim_fold(paths: RunPaths, k: int, digest: str, shape: tuple[int, int, int], wait: bool, log: RunLog):
    """Fold ``k``'s lock to train it, None when it is done, or the Owner training it elsewhere."""
    with run_lock(paths.dir):
        _check_still_ours(paths, digest)
        state = _fold_state(paths, k, digest, *shape)
        if state == "done":
            return None
        lock = FoldLock(paths.dir, k)
        if lock.acquire(0):
            # the holder may have written its done marker and let go between the check above and now
            state = _fold_state(paths, k, digest, *shape)
            if state == "done":
                lock.release()
                return None
            _prepare_fold(paths, k, state, log)
            return lock
    owner = fold_holder(paths.dir, k)
    if not wait:
        return owner if owner is not None else _claim_fold(paths, k, digest, shape, wait, log)
    log(f"fold {k}: waiting for the process training it ({owner.describe() if owner else 'gone'})")
    lock.acquire(None)
    with run_lock(paths.dir):
        _check_still_ours(paths, digest)
        state = _fold_state(paths, k, digest, *shape)
        if state == "done":
            lock.release()
            return None
        _prepare_fold(paths, k, state, log)
        return lock


def _prepare_fold(paths: RunPaths, k: int, state: str, log: RunLog) -> None:
    """Before (re)training fold ``k``: drop what a damaged attempt, or one of another config, left
    (an interrupted attempt of this run keeps its checkpoints, to resume inside the fold)."""
    if state.startswith("damaged"):
        log.warn(f"fold {k}: {state.removeprefix('damaged: ')}; retraining fold {k}")
    if state != "missing":
        shutil.rmtree(paths.fold_dir(k), ignore_errors=True)


def train_fold(family, config, task: TaskInfo, comp: Competition, folds: np.ndarray, k: int, seed: int,
               ws: Workspace, paths: RunPaths, log: RunLog, main: bool, digest: str | None = None) -> float:
    started = time.perf_counter()
    train_rows, valid_rows = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
    texts = comp.train_texts
    log(f"fold {k}: training on {len(train_rows)} rows, validating on {len(valid_rows)}")
    context = FoldContext(fold=k, seed=seed + k, cache_dir=ws.cache_dir, fold_dir=paths.fold_dir(k), log=log,
                          warn=log.warn, is_main_process=main, positions=(train_rows, valid_rows))
    model = family.Model(config, task, context)
    train_texts = [texts[i] for i in train_rows]
    valid_texts = [texts[i] for i in valid_rows]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(train_texts, comp.Y[train_rows], valid=(valid_texts, comp.Y[valid_rows]))
        predict_oof = getattr(model, "predict_oof", model.predict_proba)  # may leave rows unscored (NaN)
        oof = np.asarray(predict_oof(valid_texts), dtype=np.float64)
        test = np.asarray(model.predict_proba(comp.test_texts), dtype=np.float64)
    # library warnings (e.g. a solver that did not converge) belong in train.log, once per message
    for message in dict.fromkeys(f"fold {k}: {w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught
                                 if not issubclass(w.category, DeprecationWarning | FutureWarning)):
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
            raise RunError(f"fold {k}: model '{config.model}' returned {name} probabilities that are NaN or outside "
                           "[0, 1]; nothing was saved for this fold (check the config, e.g. a learning rate too high)")
    seconds = time.perf_counter() - started
    if main:
        if config.save_models:
            # adapter families (LoRA, IA3) keep only adapter + head, with the base model's id
            adapter = getattr(model, "saves_adapter", False)
            model.save(paths.fold_adapter_dir(k) if adapter else paths.fold_model_dir(k))
        write_npy(paths.fold_oof(k), oof)
        write_npy(paths.fold_test(k), test)
        # the marker is written last: its presence means the fold's arrays are complete
        write_json(paths.fold_done(k), {"fold": k, "seconds": round(seconds, 2), "train_rows": len(train_rows),
                                        "valid_rows": len(valid_rows), "finished": now(),
                                        "host": socket.gethostname(), "pid": os.getpid(), "digest": digest,
                                        **({} if scored.all() else {"scored_rows": int(scored.sum())})})
    log(f"fold {k}: done in {seconds:.1f}s")
    return seconds


def _fold_facts(paths: RunPaths, n_folds: int, key: str) -> dict[int, Any]:
    """One field of every fold's done.json (seconds, finished, host, ...), by fold."""
    out = {}
    for k in range(n_folds):
        try:
            out[k] = json.loads(paths.fold_done(k).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError):
            continue
    return out


def assemble(ws: Workspace, paths: RunPaths, comp: Competition, folds: np.ndarray, log: RunLog) -> OofScores:
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
    fold_seconds = {k: v for k, v in _fold_facts(paths, n_folds, "seconds").items() if isinstance(v, int | float)}
    for row in scores.per_fold:
        row["seconds"] = fold_seconds.get(row["fold"])
    total = round(sum(fold_seconds.values()), 2)
    write_run_outputs(paths, settings.id_column, settings.output_names, comp.train_ids, folds, oof, comp.test_ids, test,
                      scores.scores_json({"task": settings.task, "n_folds": n_folds, "seconds": total,
                                          **({"partial_oof": partial} if partial else {})}),
                      scores.thresholds_json(settings.output_names, settings.task, settings.min_labels))
    record = read_run_yaml(paths)
    record.update({"completed": now(), "seconds": total})
    record.pop("partial_oof", None)
    if partial:
        record["partial_oof"] = partial
    write_run_yaml(paths, record)
    on = f" on {partial['scored_rows']} of {partial['train_rows']} rows (partial OOF: not blendable)" if partial else ""
    log(f"cv {settings.metric}{on}: at 0.5 {scores.at_05:.4f}, tuned {scores.tuned:.4f}, honest {scores.honest:.4f}")
    return scores
