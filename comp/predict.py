"""Predict a new test file with a run's saved fold models (`comp predict RUN --test FILE`).

Works for every family whose ``Model`` has ``save``/``load``: the run must have been trained with
``save_models: true`` so that each ``runs/<run>/fold-<k>/model/`` exists. The fold models'
probabilities are averaged, exactly as ``comp train`` averages them for test.csv.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from comp.config import build
from comp.errors import RunError
from comp.models import get_family
from comp.models.base import FoldContext, TaskInfo
from comp.workspace import Workspace

if TYPE_CHECKING:
    import pandas as pd


def saved_model_dir(paths, fold: int) -> Path:
    """``fold-<k>/adapter/`` when the fold saved a peft adapter (the base model is named in its
    config and reloaded from the backbone), else ``fold-<k>/model/``."""
    adapter = paths.fold_adapter_dir(fold)
    return adapter if adapter.is_dir() else paths.fold_model_dir(fold)


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
    import pandas as pd

    from comp.runs import is_main_process, read_run_yaml

    log = log or (lambda message: None)
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    paths = ws.run(run_name)
    record = read_run_yaml(paths)
    if record.get("kind", "model") != "model" or "model" not in record:
        raise RunError(f"run '{run_name}' is an ensemble, not a trained model; predict with its member runs")
    settings = ws.load_settings()
    settings.require_schema()
    classes = settings.output_names
    trained_for = record.get("competition", {}).get("classes")
    if trained_for is not None and list(trained_for) != list(classes):
        raise RunError(f"run '{run_name}' was trained for classes {trained_for}, but comp.yaml has {classes}")
    family = get_family(record["model"], where=str(paths.run_yaml))
    config = build(family.Config, record.get("config", {}), str(paths.run_yaml))
    folds = record.get("folds", {})
    n_folds = int(folds.get("n_folds", 0))
    missing = [k for k in range(n_folds) if not saved_model_dir(paths, k).is_dir()]
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
        context = FoldContext(
            fold=k,
            seed=int(folds.get("seed", 0)) + k,
            cache_dir=ws.cache_dir,
            fold_dir=paths.fold_dir(k),
            log=log,
            is_main_process=is_main_process(),
        )
        model = family.Model.load(saved_model_dir(paths, k), config, task, context)
        fold_P = np.asarray(model.predict_proba(texts), dtype=np.float64)
        if fold_P.shape != P.shape:
            raise RunError(f"fold {k} of run '{run_name}' returned shape {fold_P.shape}, expected {P.shape}")
        P += fold_P / n_folds
        del model
        log(f"predict {run_name}: fold {k} done")
    frame = pd.DataFrame(P, columns=classes)
    frame.insert(0, settings.id_column, ids)
    return frame
