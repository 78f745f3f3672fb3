"""Reading and writing a run's files (the same for trained models and ensembles).

```
runs/<run>/run.yaml          resolved config, fold file + hash, versions, git sha, timings
runs/<run>/oof.parquet       id, fold, one probability column per class (class order of comp.yaml)
runs/<run>/test.parquet      id, one probability column per class
runs/<run>/scores.json       metric at 0.5, tuned, honest; per fold
runs/<run>/thresholds.json   per-class thresholds fitted on the OOF
```
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

from comp.atomic import write_json, write_parquet, write_yaml
from comp.errors import RunError
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
    import yaml

    if not paths.exists:
        raise RunError(f"no run '{paths.name}' in {paths.dir.parent}; `comp runs` lists the runs")
    return yaml.safe_load(paths.run_yaml.read_text(encoding="utf-8")) or {}


def write_run_yaml(paths: RunPaths, record: dict[str, Any]) -> None:
    write_yaml(paths.run_yaml, record)


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


def load_run(ws: Workspace, name: str, classes: list[str] | None = None) -> RunData:
    """Load a finished run; with ``classes``, check it has exactly those probability columns."""
    import pandas as pd

    paths = ws.run(name)
    record = read_run_yaml(paths)
    if not paths.oof.is_file() or not paths.test.is_file():
        raise RunError(f"run '{name}' is not finished (no oof.parquet / test.parquet); re-run `comp train` to finish it")
    oof, test = pd.read_parquet(paths.oof), pd.read_parquet(paths.test)
    id_column = oof.columns[0]
    run_classes = [c for c in oof.columns if c not in (id_column, "fold")]
    if classes is not None and run_classes != list(classes):
        raise RunError(f"run '{name}' has classes {run_classes[:6]}... which differ from comp.yaml's {list(classes)[:6]}...; "
                       "it was trained on another competition schema")
    scores = json.loads(paths.scores.read_text()) if paths.scores.is_file() else {}
    thresholds = json.loads(paths.thresholds.read_text()) if paths.thresholds.is_file() else None
    return RunData(name, record, oof[id_column].astype(str).tolist(), oof["fold"].to_numpy(), oof[run_classes].to_numpy(),
                   test[id_column].astype(str).tolist(), test[run_classes].to_numpy(), run_classes, scores, thresholds)


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
    """Every run with its CV in ``metric`` (default: each run's own metric; None where the run has
    no score in ``metric``)."""
    from comp.evaluation import greater_is_better, score_entry

    out = []
    for name in ws.run_names():
        paths = ws.run(name)
        record = read_run_yaml(paths)
        entry = score_entry(json.loads(paths.scores.read_text()) if paths.scores.is_file() else None, metric)
        cv = (entry or {}).get("cv", {})
        scored_with = (entry or {}).get("metric", metric)
        folds = record.get("folds", {})
        n_folds = folds.get("n_folds")
        done = sum(1 for k in range(n_folds or 0) if paths.fold_done(k).is_file())
        if record.get("kind") == "ensemble":
            status = "done"
        else:
            status = "done" if paths.oof.is_file() else f"{done}/{n_folds} folds"
        out.append(RunSummary(name, str(record.get("model", "?")), f"k{n_folds} s{folds.get('seed')}",
                              cv.get("at_0.5"), cv.get("tuned"), cv.get("honest"), record.get("seconds"), status,
                              scored_with, (entry or {}).get("greater_is_better", greater_is_better(scored_with))))
    return out


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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{now()} {message}\n")
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
