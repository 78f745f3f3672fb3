"""A run's files on disk: run.yaml (the typed :class:`~comp.record.RunRecord`), the JSON files and
the OOF / test parquet files (layout in comp.runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comp.atomic import write_json, write_parquet
from comp.errors import RunError, first_line
from comp.record import RunRecord, read_record, rebuild_hint, write_record
from comp.workspace import RunPaths


def read_run_yaml(paths: RunPaths) -> RunRecord:
    """run.yaml as a record; a missing run or a damaged file is one RunError line naming it."""
    if not paths.exists:
        raise RunError(f"no run '{paths.name}' in {paths.dir.parent}; `comp runs` lists the runs")
    return read_record(paths.run_yaml, paths.name)


def write_run_yaml(paths: RunPaths, record: RunRecord) -> None:
    """Write run.yaml (atomically); the caller holds the run lock where other processes share the run."""
    if not isinstance(record, RunRecord):
        raise TypeError(f"write_run_yaml takes a RunRecord, got {type(record).__name__}")
    write_record(paths.run_yaml, record)


def redo(name: str, record: RunRecord | None) -> str:
    """What rebuilds a run's files: `comp train` for a model, `comp ensemble --force` for a blend."""
    return record.rebuild_hint() if record is not None else rebuild_hint(name)


def read_json_file(path: Path, name: str, record: RunRecord | None, fix: str | None = None) -> dict[str, Any] | None:
    """A run's JSON file (scores.json, thresholds.json) or None when absent; damaged: a RunError naming it."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is damaged ({first_line(exc)}); {fix or redo(name, record)}") from None
    if not isinstance(value, dict):
        raise RunError(f"{path} is damaged (not a JSON object); {fix or redo(name, record)}")
    return value


def write_run_outputs(
    paths: RunPaths,
    id_column: str,
    classes: list[str],
    train_ids: list[str],
    folds: np.ndarray,
    oof: np.ndarray,
    test_ids: list[str],
    test: np.ndarray,
    scores: dict,
    thresholds: dict,
) -> None:

    oof_frame = pd.DataFrame(oof.astype(np.float64), columns=classes)
    oof_frame.insert(0, "fold", folds.astype(np.int64))
    oof_frame.insert(0, id_column, train_ids)
    test_frame = pd.DataFrame(test.astype(np.float64), columns=classes)
    test_frame.insert(0, id_column, test_ids)
    write_parquet(paths.oof, oof_frame)
    write_parquet(paths.test, test_frame)
    write_json(paths.scores, scores)
    write_json(paths.thresholds, thresholds)
