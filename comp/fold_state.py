"""The state of a run's fold folders on disk: done markers (done.json) and the arrays they vouch for.

A fold (or one seed of it) is ``done`` when its done.json carries the run's digest and its oof.npy /
test.npy have the expected shapes; the marker is written last, so its presence means the arrays are
complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from comp.workspace import RunPaths


def dir_state(directory: Path, digest: str, n_valid: int, n_test: int, n_outputs: int) -> str:
    """State of a fold's (or one seed's) folder: ``done`` (complete, this run's), ``missing``,
    ``other`` (another config's) or ``damaged: why``."""
    marker = directory / "done.json"
    if not marker.is_file():
        return "missing"
    try:
        facts = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"damaged: {marker.name} is unreadable"
    if facts.get("digest", digest) != digest:
        return "other"
    scored = facts.get("scored_rows", n_valid)  # a partial OOF (score_rows) leaves whole rows NaN
    for path, shape in ((directory / "oof.npy", (n_valid, n_outputs)), (directory / "test.npy", (n_test, n_outputs))):
        try:
            array = np.load(path)
        except (OSError, ValueError, EOFError) as exc:
            return (
                f"damaged: {path.name} is unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            )
        expected = scored if path.name == "oof.npy" else n_test
        if array.shape != shape or not _whole_rows(array, expected):
            return f"damaged: {path.name} has shape {array.shape} or non-finite values, expected {shape}"
    return "done"


def _whole_rows(values: np.ndarray, n_scored: int) -> bool:
    """Whether exactly ``n_scored`` rows are finite and every other row is NaN throughout."""
    finite = np.isfinite(values)
    rows = finite.all(axis=1)
    return int(rows.sum()) == n_scored and not finite[~rows].any()


def fold_state(paths: RunPaths, k: int, digest: str, n_valid: int, n_test: int, n_outputs: int) -> str:
    return dir_state(paths.fold_dir(k), digest, n_valid, n_test, n_outputs)


def done_folds(paths: RunPaths, n_folds: int) -> list[int]:
    """Folds with a done marker, or with one seed's (a run of several seeds may have no whole fold yet)."""
    return [
        k for k in range(n_folds) if paths.fold_done(k).is_file() or any(paths.fold_dir(k).glob("seed-*/done.json"))
    ]


def fold_facts(paths: RunPaths, n_folds: int, key: str) -> dict[int, Any]:
    """One field of every fold's done.json (seconds, finished, host, ...), by fold."""
    out = {}
    for k in range(n_folds):
        try:
            out[k] = json.loads(paths.fold_done(k).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError):
            continue
    return out
