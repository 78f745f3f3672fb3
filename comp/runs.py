"""Reading and writing a run's files (the same for trained models and ensembles).

```
runs/<run>/run.yaml          resolved config, fold file + hash, data fingerprint (comp.fingerprint),
                             digest (config + folds + data), versions, git sha, timings
runs/<run>/oof.parquet       id, fold, one probability column per class (class order of comp.yaml)
runs/<run>/test.parquet      id, one probability column per class
runs/<run>/scores.json       metric at 0.5, tuned, honest; per fold
runs/<run>/thresholds.json   per-class thresholds fitted on the OOF
```

:func:`load_run` is the one door every reader takes: it refuses a run whose data changed since it
was trained (:func:`check_data`) or whose files are damaged, naming the file and what rebuilds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from comp.atomic import append_text, write_json, write_parquet, write_yaml
from comp.errors import CompError, RunError
from comp.workspace import RunPaths, Workspace

_VERSIONED = ("comp", "numpy", "pandas", "scikit-learn", "torch", "transformers", "peft", "bitsandbytes", "accelerate")


def package_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def read_run_yaml(paths: RunPaths) -> dict[str, Any]:
    """run.yaml as a mapping; a missing run or a damaged file is one RunError line naming it."""
    import yaml

    if not paths.exists:
        raise RunError(f"no run '{paths.name}' in {paths.dir.parent}; `comp runs` lists the runs")
    try:
        record = yaml.safe_load(paths.run_yaml.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RunError(f"{paths.run_yaml} is damaged ({_first_line(exc)}); {_redo(paths.name, None)}") from None
    except OSError as exc:
        raise RunError(f"{paths.run_yaml} cannot be read ({exc.strerror or exc}); check its permissions") from None
    if record is None:
        return {}
    if not isinstance(record, dict):
        raise RunError(f"{paths.run_yaml} is damaged (not a mapping of settings); {_redo(paths.name, None)}")
    return record


def write_run_yaml(paths: RunPaths, record: dict[str, Any]) -> None:
    write_yaml(paths.run_yaml, record)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _redo(name: str, record: dict[str, Any] | None) -> str:
    """What rebuilds a run's files: `comp train` for a model, `comp ensemble --force` for a blend."""
    if record and record.get("kind") == "ensemble":
        members = " ".join(record.get("members") or ["RUN", "RUN"])
        method = (record.get("config") or {}).get("method", "mean")
        return f"re-create it with `comp ensemble {members} --name {name} --method {method} --force`"
    config = (record or {}).get("config_file") or "CONFIG"
    return f"re-run `comp train {config}` (with --name {name} if it differs from the file name) to rebuild it"


def read_json_file(path: Path, name: str, record: dict[str, Any] | None, fix: str | None = None) -> dict[str, Any] | None:
    """A run's JSON file (scores.json, thresholds.json) or None when absent; damaged: a RunError naming it."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is damaged ({_first_line(exc)}); {fix or _redo(name, record)}") from None
    if not isinstance(value, dict):
        raise RunError(f"{path} is damaged (not a JSON object); {fix or _redo(name, record)}")
    return value


# ---- what a run was trained on --------------------------------------------------------------------

_CURRENT: dict[tuple, dict[str, Any]] = {}


def current_data(ws: Workspace, comp=None) -> dict[str, Any]:
    """The data fingerprint of the workspace's train.csv and test.csv as comp.yaml reads them now.

    Cached per process on the files' size and modification time, so checking many runs reads the
    CSVs once.
    """
    from comp.data import load_competition
    from comp.fingerprint import data_fingerprint

    key = tuple(_stat(p) for p in (ws.settings_path, ws.train_csv, ws.test_csv, ws.sample_submission_csv))
    if key not in _CURRENT:
        comp = comp or load_competition(ws)
        _CURRENT.clear()
        _CURRENT[key] = data_fingerprint(comp, now())
    return _CURRENT[key]


def _stat(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path), st.st_ino, st.st_size, st.st_mtime_ns)


def stale_data_error(name: str, old: dict[str, Any], new: dict[str, Any]) -> RunError | None:
    """The RunError for a run whose recorded data differs from ``new``, or None when it is the same."""
    from comp.fingerprint import data_changes

    changes = data_changes(old, new)
    if not changes:
        return None
    shown = ", ".join(changes[:3]) + (", ..." if len(changes) > 3 else "")
    return RunError(
        f"run '{name}' was trained on other data: {shown} changed since {old.get('recorded', '?')}; "
        "retrain with --force or --name NEW"
    )


def check_data(ws: Workspace, name: str, record: dict[str, Any], comp=None) -> None:
    """Refuse, by name, a run whose train/test data or columns are not the workspace's current ones."""
    recorded = record.get("data")
    if not isinstance(recorded, dict):
        raise RunError(
            f"run '{name}' records no data fingerprint (it was made by an older comp), so what it was trained "
            "on cannot be checked; retrain with --force or --name NEW"
        )
    error = stale_data_error(name, recorded, current_data(ws, comp))
    if error is not None:
        raise error


@dataclass
class RunData:
    """A finished run's OOF and test probabilities, aligned with the workspace's train/test order."""

    name: str
    record: dict[str, Any]
    ids: list[str]  # train ids, OOF row order
    folds: np.ndarray  # (n_train,)
    oof: np.ndarray  # (n_train, n_outputs)
    test_ids: list[str]
    test: np.ndarray  # (n_test, n_outputs)
    classes: list[str]
    scores: dict[str, Any]
    thresholds: dict[str, Any] | None


def write_run_outputs(paths: RunPaths, id_column: str, classes: list[str], train_ids: list[str], folds: np.ndarray,
                      oof: np.ndarray, test_ids: list[str], test: np.ndarray, scores: dict, thresholds: dict) -> None:
    import pandas as pd

    oof_frame = pd.DataFrame(oof.astype(np.float64), columns=classes)
    oof_frame.insert(0, "fold", folds.astype(np.int64))
    oof_frame.insert(0, id_column, train_ids)
    test_frame = pd.DataFrame(test.astype(np.float64), columns=classes)
    test_frame.insert(0, id_column, test_ids)
    write_parquet(paths.oof, oof_frame)
    write_parquet(paths.test, test_frame)
    write_json(paths.scores, scores)
    write_json(paths.thresholds, thresholds)


def load_run(ws: Workspace, name: str, classes: list[str] | None = None, check: bool = True) -> RunData:
    """Load a finished run; with ``classes``, check it has exactly those probability columns.

    Every reader (submit, ensemble, thresholds, report, compare) comes through here, so here a run
    is refused when its data changed since it was trained (``check``), or a file of it is damaged:
    unreadable parquet or JSON, missing columns, probabilities that are NaN or outside [0, 1].
    """
    paths = ws.run(name)
    record = read_run_yaml(paths)
    if not paths.oof.is_file() or not paths.test.is_file():
        raise RunError(f"run '{name}' is not finished (no oof.parquet / test.parquet); re-run `comp train` to finish it")
    partial = record.get("partial_oof")
    if isinstance(partial, dict):
        raise RunError(
            f"run '{name}' scored only {partial.get('scored_rows')} of {partial.get('train_rows')} train rows "
            "(score_rows): its OOF is partial, so it cannot be blended, thresholded or submitted; retrain it "
            "without score_rows (comp train CONFIG --set score_rows=null --name NEW) for a full OOF"
        )
    if check:
        check_data(ws, name, record)
    oof, test = _read_probabilities(paths.oof, name, record), _read_probabilities(paths.test, name, record)
    id_column = oof.columns[0]
    if "fold" not in oof.columns or test.columns[0] != id_column:
        raise RunError(f"{paths.oof} or {paths.test} is damaged (no '{id_column}' / 'fold' column); {_redo(name, record)}")
    run_classes = [c for c in oof.columns if c not in (id_column, "fold")]
    if classes is not None and run_classes != list(classes):
        raise RunError(f"run '{name}' has classes {run_classes[:6]}... which differ from comp.yaml's {list(classes)[:6]}...; "
                       "it was trained on another competition schema")
    if [c for c in test.columns if c != id_column] != run_classes:
        raise RunError(f"{paths.test} has other class columns than {paths.oof}; {_redo(name, record)}")
    oof_values = _check_probabilities(paths.oof, oof, run_classes, id_column, name, record)
    test_values = _check_probabilities(paths.test, test, run_classes, id_column, name, record)
    scores = read_json_file(paths.scores, name, record) or {}
    thresholds = read_json_file(paths.thresholds, name, record, f"re-fit it with `comp thresholds {name}`")
    try:
        fold_column = oof["fold"].to_numpy(dtype=np.int64)
    except (TypeError, ValueError):
        raise RunError(f"{paths.oof} has a non-integer 'fold' column; {_redo(name, record)}") from None
    return RunData(name, record, oof[id_column].astype(str).tolist(), fold_column, oof_values,
                   test[id_column].astype(str).tolist(), test_values, run_classes, scores, thresholds)


def _read_probabilities(path: Path, name: str, record: dict[str, Any]):
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError and others for a truncated file
        raise RunError(f"{path} is damaged ({_first_line(exc)}); {_redo(name, record)}") from None


# probabilities may exceed [0, 1] by float rounding in a blend, never by more
_PROBABILITY_SLACK = 1e-6


def _check_probabilities(path: Path, frame, classes: list[str], id_column: str, name: str,
                         record: dict[str, Any]) -> np.ndarray:
    try:
        values = frame[classes].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise RunError(f"{path} has non-numeric probability columns; {_redo(name, record)}") from None
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
            f"nothing can be submitted or blended from it: {_redo(name, record)}"
        )
    return values


@dataclass
class RunSummary:
    name: str
    model: str
    folds: str
    at_05: float | None
    tuned: float | None
    honest: float | None
    seconds: float | None
    status: str
    metric: str | None = None  # the metric of at_05 / tuned / honest
    greater_is_better: bool | None = None


def list_runs(ws: Workspace, metric: str | None = None) -> list[RunSummary]:
    """Every run's summary with its CV in ``metric`` (default: each run's own metric; None where the
    run has no score in ``metric``). A damaged run.yaml or scores.json marks that run, never hides
    the others; a run whose data changed since it was trained says so in its status."""
    try:
        current = current_data(ws)
    except CompError:
        current = None  # no data/ yet, or it is invalid: the runs are listed without the data check
    out = []
    for name in ws.run_names():
        paths = ws.run(name)
        try:
            out.append(_summary(paths, read_run_yaml(paths), current, metric, ws))
        except CompError as exc:
            out.append(RunSummary(name, "?", "?", None, None, None, None, f"damaged: {_damage(exc, paths)}"))
    return out


def _damage(exc: CompError, paths: RunPaths) -> str:
    text = str(exc)
    for path in (paths.run_yaml, paths.scores):
        if text.startswith(str(path)):
            return f"{path.name}{text[len(str(path)):].split(';')[0]}"
    return text.split(";")[0]


def _summary(paths: RunPaths, record: dict[str, Any], current: dict[str, Any] | None,
             metric: str | None = None, ws: Workspace | None = None) -> RunSummary:
    from comp.evaluation import greater_is_better, score_entry

    entry = score_entry(read_json_file(paths.scores, paths.name, record) or {}, metric) or {}
    cv = entry.get("cv") if isinstance(entry.get("cv"), dict) else {}
    scored_with = entry.get("metric", metric)
    folds = record.get("folds") if isinstance(record.get("folds"), dict) else {}
    n_folds = folds.get("n_folds") if isinstance(folds.get("n_folds"), int) else None
    done = sum(1 for k in range(n_folds or 0) if paths.fold_done(k).is_file())
    if record.get("kind") == "ensemble":
        status = "done"
    else:
        status = "done" if paths.oof.is_file() else f"{done}/{n_folds} folds"
        partial = record.get("partial_oof")
        if paths.oof.is_file() and isinstance(partial, dict):
            status = f"partial OOF: {partial.get('scored_rows')}/{partial.get('train_rows')} rows"
    recorded = record.get("data")
    if current is not None and isinstance(recorded, dict):
        from comp.fingerprint import data_changes

        changes = data_changes(recorded, current)
        if changes:
            status = f"stale: {changes[0]} changed"
    elif current is not None:
        status = f"{status} (no data fingerprint)"
    if record.get("second_stage") and not status.startswith("stale"):
        from comp.second_stage import teacher_changes

        changed = teacher_changes(ws, record) if ws is not None else []
        if changed:
            status = f"stale: teacher {', '.join(changed)} changed"
    if record.get("cv_optimistic"):
        status = f"{status}, cv optimistic"
    return RunSummary(paths.name, str(record.get("model", "?")), f"k{n_folds} s{folds.get('seed')}",
                      _number(cv.get("at_0.5")), _number(cv.get("tuned")), _number(cv.get("honest")),
                      _number(record.get("seconds")), status, scored_with,
                      entry.get("greater_is_better", greater_is_better(scored_with)))


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class RunLog:
    """Appends timestamped lines to runs/<run>/train.log and echoes them to stderr."""

    def __init__(self, path: Path | None, echo=None, enabled: bool = True):
        self.path = path
        self.echo = echo
        self.enabled = enabled
        self.warnings: list[str] = []

    def __call__(self, message: str, echo: bool = True) -> None:
        if not self.enabled:
            return
        if self.path is not None:
            append_text(self.path, f"{now()} {message}\n")
        if echo and self.echo is not None:
            self.echo(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self(f"warning: {message}")


def is_main_process() -> bool:
    """False on the non-zero ranks of `torchrun` / `accelerate launch`: only rank 0 writes files."""
    return int(os.environ.get("RANK", "0")) == 0


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
    members = run.record.get("members") or []
    config = run.record.get("config", {}) if members else {"method": "mean"}
    M = np.stack([load_run(ws, m, settings.output_names).oof for m in members]) if members else run.oof[None]
    chain = Chain(make_blender(config, task, settings.min_labels),
                  decision=decision_for(metric, task, settings.min_labels, class_offsets), task=task)
    scores = evaluate_chain(chain, M, comp.Y, run.folds, metric)
    if not np.allclose(chain.oof_, run.oof, rtol=0, atol=1e-6):
        raise RunError(f"run '{name}' no longer matches its member runs ({', '.join(members)}): one was retrained "
                       f"since; rebuild it with `comp ensemble {' '.join(members)} --name {name} --force`")
    paths = ws.run(name)
    merged, new_decision = merge_scores(run.scores, scores)
    write_json(paths.scores, merged)
    if new_decision:
        write_json(paths.thresholds, scores.thresholds_json(settings.output_names, task, settings.min_labels))
    return scores, run, comp
