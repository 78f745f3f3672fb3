"""Whether the run in run.yaml is the one asked for now: same config, backbone files, fold file, data and
teachers.

The run's ``digest`` (config + fold file + data, and the inputs' and teachers' identities when there are
any) ties every done.json to the run.yaml it was trained for.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from comp.digest import json_digest
from comp.errors import RunError
from comp.fingerprint import PARTS
from comp.record import FoldsRecord, RunRecord, SecondStageRecord, plain
from comp.run_files import read_run_yaml
from comp.staleness import stale_data_error
from comp.workspace import RunPaths


def run_digest(
    config: dict[str, Any],
    folds: FoldsRecord,
    data: dict[str, Any],
    teachers: SecondStageRecord | None = None,
    inputs: dict[str, str] | None = None,
) -> str:
    """What identifies a run's folds as belonging together: config, fold file and data (and the
    fingerprints of its backbone files, and the teachers' identities for a student of
    comp.second_stage), hashed."""
    identity = {
        "config": config,
        "folds": dataclasses.asdict(folds),
        "data": {"columns": data.get("columns"), **{f"{s}.{p}": (data.get(s) or {}).get(p) for s, p in PARTS}},
    }
    if inputs:
        identity["inputs"] = dict(sorted(inputs.items()))
    if teachers is not None and teachers.teachers():
        identity["teachers"] = plain(teachers)
    return json_digest(identity)


def difference(paths: RunPaths, record: RunRecord, new: RunRecord, defaults: dict[str, Any]) -> RunError | None:
    """Why the run in run.yaml (``record``) is not the one asked for now (``new``), or None when it is
    the same run."""
    # a key the family gained after the run started counts as unchanged while it keeps its default
    old_config = {**{k: v for k, v in defaults.items() if k not in record.config}, **record.config}
    config = new.config
    if old_config != config:
        changed = sorted(k for k in set(old_config) | set(config) if old_config.get(k) != config.get(k))
        detail = ", ".join(f"{k}: {old_config.get(k)!r} -> {config.get(k)!r}" for k in changed[:3])
        return RunError(
            f"run '{paths.name}' already exists with a different config ({detail}); pass --force to retrain it "
            "or --name NEW to keep both"
        )
    changed_input = _changed_input(paths.name, record, new)
    if changed_input is not None:
        return changed_input
    from comp.teachers import describe_change

    changed_teacher = describe_change(paths.name, record.second_stage, new.second_stage)
    if changed_teacher is not None:
        return changed_teacher
    old, fold_file, fold_hash = record.folds, new.folds.file, new.folds.hash
    if not old.same_file(new.folds):
        return RunError(
            f"run '{paths.name}' was trained on {old.file} (hash {old.hash[:8]}), not on "
            f"{fold_file} (hash {fold_hash[:8]}); pass --force to retrain it or --name NEW to keep both"
        )
    if record.data is None:
        return RunError(
            f"run '{paths.name}' records no data fingerprint (it was made by an older comp), so its finished folds "
            "cannot be checked against the data; retrain with --force or --name NEW"
        )
    return stale_data_error(paths.name, record.data, new.data)


def _changed_input(name: str, record: RunRecord, new: RunRecord) -> RunError | None:
    """A backbone (or other input file) whose contents changed since the run's folds were trained from it.
    A run.yaml written before inputs were recorded has none: it adopts the current ones."""
    for key, was in sorted(record.inputs.items()):
        now = new.inputs.get(key)
        if now != was:
            source = new.config.get(key, key)
            return RunError(
                f"run '{name}' was trained from {key} {source} (fingerprint {was[:8]}), whose files have changed "
                f"since (now {str(now)[:8]}); pass --force to retrain it from the new files or --name NEW to keep both"
            )
    return None


def check_still_ours(paths: RunPaths, digest: str | None) -> None:
    """Refuse to write more when run.yaml was replaced (another config, with --force) meanwhile."""
    if read_run_yaml(paths).digest != digest:
        raise RunError(
            f"run '{paths.name}' was replaced by another process (another config, fold file or data, with --force) "
            "while this one was training; nothing more was written by this one: check `comp runs`"
        )
