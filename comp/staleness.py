"""Whether a run was trained on the workspace's current data (run.yaml ``data:`` against now)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comp.errors import RunError
from comp.provenance import now
from comp.record import RunRecord
from comp.workspace import Workspace

# one entry: (stats of comp.yaml and the CSVs) -> fingerprint
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


def check_data(ws: Workspace, name: str, record: RunRecord, comp=None) -> None:
    """Refuse, by name, a run whose train/test data or columns are not the workspace's current ones."""
    if record.data is None:
        raise RunError(
            f"run '{name}' records no data fingerprint (it was made by an older comp), so what it was trained "
            "on cannot be checked; retrain with --force or --name NEW"
        )
    error = stale_data_error(name, record.data, current_data(ws, comp))
    if error is not None:
        raise error
