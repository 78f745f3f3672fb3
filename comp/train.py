"""The out-of-fold loop: for each fold, fit on the other folds, predict the held-out rows and test.

Each finished fold leaves its arrays and then a done marker; a re-run skips finished folds, so an
interrupted run continues where it stopped. The run's oof.parquet, test.parquet, scores.json and
thresholds.json are assembled as soon as every fold is done (also when folds ran on other machines
with `--fold k`).
"""

from __future__ import annotations

import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comp.atomic import write_json, write_npy
from comp.config import load_model_config, to_dict
from comp.data import Competition, load_competition
from comp.errors import RunError
from comp.evaluation import OofScores, evaluate_oof
from comp.folds import file_hash, load_folds, make_folds, write_folds
from comp.models import get_family
from comp.models.base import FoldContext, TaskInfo
from comp.runs import (
    RunLog,
    git_commit,
    is_main_process,
    now,
    package_versions,
    read_run_yaml,
    write_run_outputs,
    write_run_yaml,
)
from comp.workspace import CompSettings, RunPaths, Workspace


@dataclass
class TrainResult:
    run: str
    trained: list[int]  # folds trained by this call
    skipped: list[int]  # folds already done
    pending: list[int]  # folds still missing (trained elsewhere with --fold)
    scores: OofScores | None  # set once every fold is done
    fold_seconds: dict[int, float]


def task_info(settings: CompSettings) -> TaskInfo:
    return TaskInfo(settings.task, settings.output_names, settings.metric, settings.min_labels)


def ensure_folds(ws: Workspace, comp: Competition, n_folds: int, seed: int, log: Callable[[str], None]) -> tuple[Path, np.ndarray]:
    """The shared fold file for (K, seed, group column), created if missing, checked against train."""
    group = comp.settings.group_column
    path = ws.folds_csv(n_folds, seed, group)
    if not path.exists():
        write_folds(path, make_folds(comp, n_folds, seed, group))
        log(f"created {ws.relative(path)}")
    return path, load_folds(path, comp)


def _check_same_run(paths: RunPaths, config: dict[str, Any], defaults: dict[str, Any], fold_file: str,
                    fold_hash: str) -> None:
    record = read_run_yaml(paths)
    # a key the family gained after the run started counts as unchanged while it keeps its default
    old_config = {**{k: v for k, v in defaults.items() if k not in record.get("config", {})}, **record.get("config", {})}
    if old_config != config:
        changed = sorted(k for k in set(old_config) | set(config) if old_config.get(k) != config.get(k))
        detail = ", ".join(f"{k}: {old_config.get(k)!r} -> {config.get(k)!r}" for k in changed[:3])
        raise RunError(
            f"run '{paths.name}' already exists with a different config ({detail}); pass --force to retrain it "
            "or --name NEW to keep both"
        )
    old = record.get("folds", {})
    if old.get("file") != fold_file or old.get("hash") != fold_hash:
        raise RunError(
            f"run '{paths.name}' was trained on {old.get('file')} (hash {str(old.get('hash'))[:8]}), not on "
            f"{fold_file} (hash {fold_hash[:8]}); pass --force to retrain it or --name NEW to keep both"
        )


def train(ws: Workspace, config_path: Path, *, n_folds: int | None = None, seed: int | None = None,
          only_fold: int | None = None, overrides: list[str] | None = None, name: str | None = None,
          force: bool = False, echo: Callable[[str], None] | None = None) -> TrainResult:
    settings = ws.load_settings()
    config = load_model_config(config_path, overrides)
    family = get_family(config.model)
    run_name = name or Path(config_path).stem
    paths = ws.run(run_name)
    n_folds = n_folds or settings.folds
    seed = settings.seed if seed is None else seed
    if only_fold is not None and not 0 <= only_fold < n_folds:
        raise RunError(f"--fold {only_fold} is out of range: folds are 0..{n_folds - 1}")
    main = is_main_process()
    log = RunLog(paths.log if main else None, echo if main else None)

    comp = load_competition(ws, settings)
    fold_path, folds = ensure_folds(ws, comp, n_folds, seed, log) if main else (None, None)
    if not main:  # other ranks read the file rank 0 makes (rank 0 may still be writing it: wait up to 10 min)
        fold_path = ws.folds_csv(n_folds, seed, settings.group_column)
        deadline = time.monotonic() + 600
        while not fold_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        folds = load_folds(fold_path, comp)
    config_dict = to_dict(config)
    fold_hash = file_hash(fold_path)
    fold_file = ws.relative(fold_path)

    selected = [only_fold] if only_fold is not None else list(range(n_folds))
    if paths.exists and not force:
        _check_same_run(paths, config_dict, to_dict(family.Config()), fold_file, fold_hash)
    if force and main:
        for k in selected:
            shutil.rmtree(paths.fold_dir(k), ignore_errors=True)
        for output in (paths.oof, paths.test, paths.scores, paths.thresholds):
            output.unlink(missing_ok=True)
    record = read_run_yaml(paths) if paths.exists and not force else {}
    record.update({
        "name": run_name,
        "kind": "model",
        "model": config.model,
        "config": config_dict,
        "config_file": str(config_path),
        "folds": {"file": fold_file, "hash": fold_hash, "n_folds": n_folds, "seed": seed,
                  "group_column": settings.group_column},
        "competition": {"slug": settings.competition, "task": settings.task, "metric": settings.metric,
                        "classes": settings.output_names},
        "versions": package_versions(),
        "git_commit": git_commit(ws.root),
        "created": record.get("created", now()),
    })
    record.setdefault("fold_seconds", {})
    if main:
        write_run_yaml(paths, record)
        log(f"run {run_name}: model {config.model}, {n_folds} folds from {fold_file}")
        log(f"config: {config_dict}", echo=False)

    task = task_info(settings)
    trained, skipped = [], []
    for k in selected:
        if paths.fold_done(k).is_file():
            skipped.append(k)
            continue
        seconds = train_fold(family, config, task, comp, folds, k, seed, ws, paths, log, main)
        trained.append(k)
        if main:
            record = read_run_yaml(paths)  # another machine may have added folds meanwhile
            record.setdefault("fold_seconds", {})[k] = round(seconds, 2)
            write_run_yaml(paths, record)

    pending = [k for k in range(n_folds) if not paths.fold_done(k).is_file()]
    scores = None
    if not pending and main:
        scores = assemble(ws, paths, comp, folds, log)
    fold_seconds = {int(k): v for k, v in read_run_yaml(paths).get("fold_seconds", {}).items()} if paths.exists else {}
    return TrainResult(run_name, trained, skipped, pending, scores, fold_seconds)


def train_fold(family, config, task: TaskInfo, comp: Competition, folds: np.ndarray, k: int, seed: int,
               ws: Workspace, paths: RunPaths, log: RunLog, main: bool) -> float:
    started = time.perf_counter()
    train_rows, valid_rows = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
    texts = comp.train_texts
    log(f"fold {k}: training on {len(train_rows)} rows, validating on {len(valid_rows)}")
    context = FoldContext(fold=k, seed=seed + k, cache_dir=ws.cache_dir, fold_dir=paths.fold_dir(k), log=log,
                          warn=log.warn, is_main_process=main)
    model = family.Model(config, task, context)
    train_texts = [texts[i] for i in train_rows]
    valid_texts = [texts[i] for i in valid_rows]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(train_texts, comp.Y[train_rows], valid=(valid_texts, comp.Y[valid_rows]))
        oof = np.asarray(model.predict_proba(valid_texts), dtype=np.float64)
        test = np.asarray(model.predict_proba(comp.test_texts), dtype=np.float64)
    # library warnings (e.g. a solver that did not converge) belong in train.log, once per message
    for message in dict.fromkeys(f"fold {k}: {w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught
                                 if not issubclass(w.category, DeprecationWarning | FutureWarning)):
        log.warn(message)
    expected = (len(valid_rows), task.n_outputs)
    if oof.shape != expected or test.shape != (len(comp.test_texts), task.n_outputs):
        raise RunError(f"model '{config.model}' returned probabilities of shape {oof.shape}, expected {expected}")
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
                                        "valid_rows": len(valid_rows), "finished": now()})
    log(f"fold {k}: done in {seconds:.1f}s")
    return seconds


def assemble(ws: Workspace, paths: RunPaths, comp: Competition, folds: np.ndarray, log: RunLog) -> OofScores:
    """Gather the fold arrays into the run's files and score the OOF."""
    settings = comp.settings
    n_folds = int(folds.max()) + 1
    oof = np.zeros((len(folds), len(settings.output_names)))
    test = np.zeros((len(comp.test_texts), len(settings.output_names)))
    for k in range(n_folds):
        oof[folds == k] = np.load(paths.fold_oof(k))
        test += np.load(paths.fold_test(k)) / n_folds
    scores = evaluate_oof(oof, comp.Y, folds, settings.task, settings.metric, settings.min_labels)
    record = read_run_yaml(paths)
    fold_seconds = {int(k): v for k, v in record.get("fold_seconds", {}).items()}
    for row in scores.per_fold:
        row["seconds"] = fold_seconds.get(row["fold"])
    total = round(sum(v for v in fold_seconds.values() if v), 2)
    write_run_outputs(paths, settings.id_column, settings.output_names, comp.train_ids, folds, oof, comp.test_ids, test,
                      scores.scores_json({"task": settings.task, "n_folds": n_folds, "seconds": total}),
                      scores.thresholds_json(settings.output_names, settings.task, settings.min_labels))
    record.update({"completed": now(), "seconds": total})
    write_run_yaml(paths, record)
    log(f"cv {settings.metric}: at 0.5 {scores.at_05:.4f}, tuned {scores.tuned:.4f}, honest {scores.honest:.4f}")
    return scores
