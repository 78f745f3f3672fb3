"""Reading a run's outputs (the same for trained models and ensembles).

```
runs/<run>/run.yaml          the typed record (comp.record.RunRecord): resolved config, fold file + hash,
                             data fingerprint (comp.fingerprint), digest, versions, git sha, timings
runs/<run>/oof.parquet       id, fold, one probability column per class (class order of comp.yaml)
runs/<run>/test.parquet      id, one probability column per class
runs/<run>/scores.json       metric at 0.5, tuned, honest; per fold
runs/<run>/thresholds.json   per-class thresholds fitted on the OOF
```

:func:`load_run` is the one door every reader takes: it refuses a run whose data changed since it
was trained (comp.staleness.check_data) or whose files are damaged, naming the file and what
rebuilds it. The names other modules take from here (read_run_yaml, list_runs, now, RunLog, ...)
live in the modules of their concept and are re-exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comp.atomic import write_json
from comp.errors import RunError
from comp.provenance import git_commit, now, package_versions
from comp.record import RunRecord
from comp.run_files import first_line, read_json_file, read_run_yaml, redo, write_run_outputs, write_run_yaml
from comp.run_list import RunSummary, list_runs
from comp.runlog import RunLog, is_main_process
from comp.staleness import check_data, current_data, stale_data_error
from comp.workspace import Workspace

__all__ = [
    "RunData",
    "RunLog",
    "RunRecord",
    "RunSummary",
    "check_data",
    "current_data",
    "git_commit",
    "is_main_process",
    "labels_for",
    "list_runs",
    "load_run",
    "now",
    "package_versions",
    "read_json_file",
    "read_run_yaml",
    "rescore_run",
    "stale_data_error",
    "write_run_outputs",
    "write_run_yaml",
]


@dataclass
class RunData:
    """A finished run's OOF and test probabilities, aligned with the workspace's train/test order."""

    name: str
    record: RunRecord
    ids: list[str]  # train ids, OOF row order
    folds: np.ndarray  # (n_train,)
    oof: np.ndarray  # (n_train, n_outputs)
    test_ids: list[str]
    test: np.ndarray  # (n_test, n_outputs)
    classes: list[str]
    scores: dict[str, Any]
    thresholds: dict[str, Any] | None


def load_run(ws: Workspace, name: str, classes: list[str] | None = None, check: bool = True) -> RunData:
    """Load a finished run; with ``classes``, check it has exactly those probability columns.

    Every reader (submit, ensemble, thresholds, report, compare) comes through here, so here a run
    is refused when its data changed since it was trained (``check``), or a file of it is damaged:
    unreadable parquet or JSON, missing columns, probabilities that are NaN or outside [0, 1].
    """
    paths = ws.run(name)
    record = read_run_yaml(paths)
    if not paths.oof.is_file() or not paths.test.is_file():
        raise RunError(
            f"run '{name}' is not finished (no oof.parquet / test.parquet); re-run `comp train` to finish it"
        )
    partial = record.partial_oof
    if partial is not None:
        raise RunError(
            f"run '{name}' scored only {partial.scored_rows} of {partial.train_rows} train rows "
            "(score_rows): its OOF is partial, so it cannot be blended, thresholded or submitted; retrain it "
            "without score_rows (comp train CONFIG --set score_rows=null --name NEW) for a full OOF"
        )
    if check:
        check_data(ws, name, record)
    oof, test = _read_probabilities(paths.oof, name, record), _read_probabilities(paths.test, name, record)
    id_column = oof.columns[0]
    if "fold" not in oof.columns or test.columns[0] != id_column:
        raise RunError(
            f"{paths.oof} or {paths.test} is damaged (no '{id_column}' / 'fold' column); {redo(name, record)}"
        )
    run_classes = [c for c in oof.columns if c not in (id_column, "fold")]
    if classes is not None and run_classes != list(classes):
        raise RunError(
            f"run '{name}' has classes {run_classes[:6]}... which differ from comp.yaml's {list(classes)[:6]}...; "
            "it was trained on another competition schema"
        )
    if [c for c in test.columns if c != id_column] != run_classes:
        raise RunError(f"{paths.test} has other class columns than {paths.oof}; {redo(name, record)}")
    oof_values = _check_probabilities(paths.oof, oof, run_classes, id_column, name, record)
    test_values = _check_probabilities(paths.test, test, run_classes, id_column, name, record)
    scores = read_json_file(paths.scores, name, record) or {}
    thresholds = read_json_file(paths.thresholds, name, record, f"re-fit it with `comp thresholds {name}`")
    try:
        fold_column = oof["fold"].to_numpy(dtype=np.int64)
    except (TypeError, ValueError):
        raise RunError(f"{paths.oof} has a non-integer 'fold' column; {redo(name, record)}") from None
    return RunData(
        name,
        record,
        oof[id_column].astype(str).tolist(),
        fold_column,
        oof_values,
        test[id_column].astype(str).tolist(),
        test_values,
        run_classes,
        scores,
        thresholds,
    )


def _read_probabilities(path: Path, name: str, record: RunRecord):

    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError and others for a truncated file
        raise RunError(f"{path} is damaged ({first_line(exc)}); {redo(name, record)}") from None


# probabilities may exceed [0, 1] by float rounding in a blend, never by more
_PROBABILITY_SLACK = 1e-6


def _check_probabilities(
    path: Path, frame, classes: list[str], id_column: str, name: str, record: RunRecord
) -> np.ndarray:
    try:
        values = frame[classes].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise RunError(f"{path} has non-numeric probability columns; {redo(name, record)}") from None
    bad = ~np.isfinite(values)
    kind = "NaN or infinite values"
    if not bad.any():
        bad = (values < -_PROBABILITY_SLACK) | (values > 1 + _PROBABILITY_SLACK)
        kind = "probabilities outside [0, 1]"
    if bad.any():
        column = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, column])
        shown = ", ".join(f"{values[i, column]:g}" for i in rows[:3])
        ids = ", ".join(str(v) for v in frame[id_column].iloc[rows[:3]])
        raise RunError(
            f"{path} has {kind} in column '{classes[column]}' ({len(rows)} row(s): {shown}; ids {ids}); "
            f"nothing can be submitted or blended from it: {redo(name, record)}"
        )
    return values


def labels_for(ws: Workspace, run: RunData):
    """The competition (validated) and Y aligned with the run's OOF rows."""
    from comp.data import load_competition

    comp = load_competition(ws)
    if run.ids != comp.train_ids:
        raise RunError(f"run '{run.name}' was trained on other train ids than data/train.csv holds; retrain it")
    return comp


def rescore_run(ws: Workspace, name: str, metric: str | None = None, class_offsets: bool = False):
    """Re-fit a run's decision for ``metric`` and rewrite scores.json (and thresholds.json when the
    decision changes: a probability metric keeps the run's thresholds and is stored as its own entry).

    The run's chain is rebuilt from run.yaml (a trained model: the mean of itself; an ensemble: its
    blender over its members), so the honest CV re-fits everything the run fitted on the OOF.
    """
    from comp.blend import make_blender
    from comp.chain import Chain
    from comp.evaluation import decision_for, evaluate_chain, merge_scores
    from comp.metrics import METRICS

    settings = ws.load_settings()
    metric = metric or settings.metric
    if metric not in METRICS:
        raise RunError(f"unknown metric '{metric}'; choose one of {', '.join(METRICS)}")
    run = load_run(ws, name, settings.output_names)
    comp = labels_for(ws, run)
    task = settings.task
    members = run.record.members
    config = run.record.config if run.record.is_ensemble else {"method": "mean"}
    M = np.stack([load_run(ws, m, settings.output_names).oof for m in members]) if members else run.oof[None]
    chain = Chain(
        make_blender(config, task, settings.min_labels),
        decision=decision_for(metric, task, settings.min_labels, class_offsets),
        task=task,
    )
    scores = evaluate_chain(chain, M, comp.Y, run.folds, metric)
    if not np.allclose(chain.oof_, run.oof, rtol=0, atol=1e-6):
        raise RunError(
            f"run '{name}' no longer matches its member runs ({', '.join(members)}): one was retrained "
            f"since; rebuild it with `comp ensemble {' '.join(members)} --name {name} --force`"
        )
    paths = ws.run(name)
    merged, new_decision = merge_scores(run.scores, scores)
    write_json(paths.scores, merged)
    if new_decision:
        write_json(paths.thresholds, scores.thresholds_json(settings.output_names, task, settings.min_labels))
    return scores, run, comp
