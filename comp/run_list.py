"""`comp runs`: every run's summary (model, folds, CV in a metric, status), damaged runs marked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comp.errors import CompError
from comp.record import RunRecord
from comp.run_files import read_json_file, read_run_yaml
from comp.staleness import current_data
from comp.workspace import RunPaths, Workspace


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
            return f"{path.name}{text[len(str(path)) :].split(';')[0]}"
    return text.split(";")[0]


def _status(paths: RunPaths, record: RunRecord, current: dict[str, Any] | None, ws: Workspace) -> str:
    if record.is_ensemble:
        status = "done"
    elif not paths.oof.is_file():
        done = sum(1 for k in range(record.folds.n_folds) if paths.fold_done(k).is_file())
        status = f"{done}/{record.folds.n_folds} folds"
    elif record.partial_oof is not None:
        status = f"partial OOF: {record.partial_oof.scored_rows}/{record.partial_oof.train_rows} rows"
    else:
        status = "done"
    if current is not None and record.data is not None:
        from comp.fingerprint import data_changes

        changes = data_changes(record.data, current)
        if changes:
            status = f"stale: {changes[0]} changed"
    elif current is not None:
        status = f"{status} (no data fingerprint)"
    if record.second_stage is not None and not status.startswith("stale"):
        from comp.teachers import teacher_changes

        changed = teacher_changes(ws, record)
        if changed:
            status = f"stale: teacher {', '.join(changed)} changed"
    if record.cv_optimistic:
        status = f"{status}, cv optimistic"
    return status


def _summary(
    paths: RunPaths, record: RunRecord, current: dict[str, Any] | None, metric: str | None, ws: Workspace
) -> RunSummary:
    from comp.evaluation import greater_is_better, score_entry

    entry = score_entry(read_json_file(paths.scores, paths.name, record) or {}, metric) or {}
    cv = entry.get("cv") if isinstance(entry.get("cv"), dict) else {}
    scored_with = entry.get("metric", metric)
    return RunSummary(
        paths.name,
        record.model,
        f"k{record.folds.n_folds} s{record.folds.seed}",
        _number(cv.get("at_0.5")),
        _number(cv.get("tuned")),
        _number(cv.get("honest")),
        record.seconds,
        _status(paths, record, current, ws),
        scored_with,
        entry.get("greater_is_better", greater_is_better(scored_with)),
    )


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
