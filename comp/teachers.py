"""A student's teachers as its run.yaml records them (comp.second_stage): their identity, and
whether a teacher changed since the student was trained.

Kept apart from comp.second_stage so that listing runs (comp.run_list) can tell a stale student
without importing the training side.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from comp.digest import json_digest
from comp.errors import RunError
from comp.record import RunRecord, SecondStageRecord
from comp.workspace import RunPaths, Workspace


def outputs_hash(paths: RunPaths) -> str:
    """A hash of what a student takes from a run: oof/test parquet and every fold's done marker and
    test array (a retrained fold has a new done.json). Cheap: no model weights are read."""
    h = hashlib.sha256()
    files = [
        paths.oof,
        paths.test,
        *sorted(paths.dir.glob("fold-*/done.json")),
        *sorted(paths.dir.glob("fold-*/test.npy")),
    ]
    for path in files:
        h.update(str(path.relative_to(paths.dir)).encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"-")
    return h.hexdigest()[:16]


def data_id(data: dict[str, Any] | None) -> str | None:
    """A short hash of a run's data fingerprint (the parts compared, not when it was recorded)."""
    from comp.fingerprint import PARTS

    if not isinstance(data, dict):
        return None
    parts = {f"{s}.{p}": (data.get(s) or {}).get(p) for s, p in PARTS}
    return json_digest(parts)


def teacher_changes(ws: Workspace, record: RunRecord) -> list[str]:
    """Names of the teachers in a student's record whose outputs changed since (for `comp runs`);
    a teacher that is gone counts as changed."""
    if record.second_stage is None:
        return []
    changed = []
    for teacher in record.second_stage.teachers().values():
        paths = ws.run(teacher.run)
        if not paths.exists or outputs_hash(paths) != teacher.outputs:
            changed.append(teacher.run)
    return list(dict.fromkeys(changed))


def describe_change(name: str, old: SecondStageRecord | None, new: SecondStageRecord | None) -> RunError | None:
    """The RunError for a student whose recorded teachers differ from those of now, or None."""
    old_teachers = old.teachers() if old is not None else {}
    new_teachers = new.teachers() if new is not None else {}
    for key in sorted(set(old_teachers) | set(new_teachers)):
        a = dataclasses.asdict(old_teachers[key]) if key in old_teachers else {}
        b = dataclasses.asdict(new_teachers[key]) if key in new_teachers else {}
        if a == b:
            continue
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        what = "outputs (it was retrained)" if changed == ["outputs"] else ", ".join(changed)
        return RunError(
            f"run '{name}' was trained from {key} teacher '{a.get('run', b.get('run'))}' as it was then; its "
            f"{what} changed since; pass --force to retrain the student or --name NEW to keep both"
        )
    return None
