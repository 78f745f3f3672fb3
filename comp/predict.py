"""Predict a new test file with a run's saved fold models (`comp predict RUN --test FILE`).

Works for every family whose ``Model`` has ``save``/``load``: the run must have been trained with
``save_models: true`` so that each ``runs/<run>/fold-<k>/model/`` exists. The fold models'
probabilities are averaged, exactly as ``comp train`` averages them for test.csv.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from comp.config import build
from comp.errors import RunError
from comp.models import get_family
from comp.models.base import FoldContext, TaskInfo
from comp.record import RunRecord
from comp.run_files import read_run_yaml
from comp.runlog import is_main_process
from comp.workspace import Workspace


def saved_model_dir(paths, fold: int, seed: int = 0, n_seeds: int = 1) -> Path:
    """``fold-<k>/adapter/`` when the fold saved a peft adapter (the base model is named in its
    config and reloaded from the backbone), else ``fold-<k>/model/``; with several seeds, the same
    under ``fold-<k>/seed-<s>/``."""
    folder = paths.task_dir(fold, seed, n_seeds)
    return folder / "adapter" if (folder / "adapter").is_dir() else folder / "model"


def predict_run(
    workspace: Workspace | str | Path,
    run_name: str,
    test_csv: str | Path,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Mean probability of the run's fold models on ``test_csv``.

    Returns a DataFrame with the id column and one probability column per class (comp.yaml
    order), rows in the order of the file.
    """

    log = log or (lambda message: None)
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    paths = ws.run(run_name)
    record = read_run_yaml(paths)
    if record.is_ensemble:
        raise RunError(f"run '{run_name}' is an ensemble, not a trained model; predict with its member runs")
    settings = ws.load_settings()
    settings.require_schema()
    classes = settings.output_names
    trained_for = record.competition.classes
    if list(trained_for) != list(classes):
        raise RunError(f"run '{run_name}' was trained for classes {trained_for}, but comp.yaml has {classes}")
    model_config(record, paths)  # the stored config is still valid here
    n_folds = record.folds.n_folds
    missing = missing_saved_models(paths, record)
    if not n_folds or missing:
        shown = ", ".join(map(str, missing)) or "all"
        raise RunError(
            f"run '{run_name}' has no saved model for fold(s) {shown} (runs/{run_name}/fold-<k>/model/); "
            f"retrain it with save_models: true (comp train CONFIG --set save_models=true --force)"
        )

    from comp.data import read_texts

    ids, texts = read_texts(test_csv, settings)
    negative = str(settings.classes[0]) if settings.task == "binary" else None
    task = TaskInfo(settings.task, classes, settings.metric, settings.min_labels, negative)
    P = np.zeros((len(texts), len(classes)))
    for k in range(n_folds):
        P += fold_proba(ws, run_name, record, k, texts, task, log) / n_folds
        log(f"predict {run_name}: fold {k} done")
    frame = pd.DataFrame(P, columns=classes)
    frame.insert(0, settings.id_column, ids)
    return frame


def model_config(record: RunRecord, paths):
    """The family's Config built from run.yaml's ``config`` (refused by name when it no longer is valid)."""
    family = get_family(record.model, where=str(paths.run_yaml))
    return build(family.Config, record.config, str(paths.run_yaml))


def missing_saved_models(paths, record: RunRecord) -> list[int]:
    """The folds of a run (from its run.yaml ``record``) that lack a saved model for some seed."""
    n_seeds = int(record.config.get("seeds", 1) or 1)
    return [
        k
        for k in range(record.folds.n_folds)
        if not all(saved_model_dir(paths, k, s, n_seeds).is_dir() for s in range(n_seeds))
    ]


def fold_proba(
    ws: Workspace,
    run_name: str,
    record: RunRecord,
    k: int,
    texts: list[str],
    task: TaskInfo,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Probabilities (n_texts, n_outputs) of run ``run_name``'s saved fold-``k`` model (the mean of
    its seeds' models, as `comp train` averages them), ``record`` being its run.yaml."""
    from comp.seeds import mean_of, task_seed

    paths = ws.run(run_name)
    family = get_family(record.model, where=str(paths.run_yaml))
    config = model_config(record, paths)
    n_seeds = int(getattr(config, "seeds", 1))
    seed_P = []
    for s in range(n_seeds):
        context = FoldContext(
            fold=k,
            seed=task_seed(record.folds.seed, k, s),
            cache_dir=ws.cache_dir,
            fold_dir=paths.task_dir(k, s, n_seeds),
            log=log or (lambda message: None),
            is_main_process=is_main_process(),
        )
        model = family.Model.load(saved_model_dir(paths, k, s, n_seeds), config, task, context)
        seed_P.append(np.asarray(model.predict_proba(texts), dtype=np.float64))
        expected = (len(texts), task.n_outputs)
        if seed_P[-1].shape != expected:
            raise RunError(f"fold {k} of run '{run_name}' returned shape {seed_P[-1].shape}, expected {expected}")
        del model
    return seed_P[0] if n_seeds == 1 else mean_of(seed_P)
