"""`comp submit`: a run's test probabilities -> the file shaped exactly like sample_submission
(comp.submission_format), validated as Kaggle will read it (comp.submission_checks), written,
uploaded and recorded in the ledger. The building and validation functions are re-exported here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comp.digest import sha256_bytes
from comp.errors import ConfigError, KaggleError
from comp.submission_checks import check_submission, parse_submission, validate_file, validate_submission
from comp.submission_format import (
    build_submission,
    layout,
    submission_text,
    threshold_vector,
    value_kind_problems,
)
from comp.workspace import Workspace

if TYPE_CHECKING:
    from comp.ledger import LedgerEntry

__all__ = [
    "SubmitOutcome",
    "build_submission",
    "check_submission",
    "default_message",
    "layout",
    "parse_submission",
    "score_metric",
    "submission_text",
    "submit_run",
    "threshold_vector",
    "validate_file",
    "validate_submission",
    "value_kind_problems",
]


@dataclass
class SubmitOutcome:
    entry: LedgerEntry
    path: Path
    rows: int
    uploaded: bool
    kaggle_message: str = ""
    left_today: int | None = None
    duplicate_of: LedgerEntry | None = None  # a dry run of a file already uploaded


def default_message(run: str, scores: dict[str, Any]) -> str:
    cv = scores.get("cv") or {}
    parts = [
        f"{name} {cv[key]:.4f}"
        for name, key in (("tuned", "tuned"), ("honest", "honest"))
        if isinstance(cv.get(key), int | float)
    ]
    return f"{run}: CV {scores.get('metric', '')} {', '.join(parts)}".strip() if parts else run


def submit_run(
    ws: Workspace, run: str, message: str | None = None, dry_run: bool = False, force: bool = False
) -> SubmitOutcome:
    """Build and validate RUN's submission, write it, upload it (unless ``dry_run``) and log it.

    Before anything is written: the run's data is the workspace's (comp.runs.load_run), its files are
    sound, the value kind fits the metric and sample_submission.csv (``force`` overrides), and Kaggle
    has a submission left today. The ledger row is written as ``uploading`` before the upload, under
    a lock on the file, and updated after it; a crash in between is reconciled with Kaggle's list of
    submissions by the next `comp submit` or `comp lb` (:func:`comp.ledger.reconcile`).
    """
    from comp import kaggle_client
    from comp.atomic import write_bytes
    from comp.data import read_csv
    from comp.ledger import Ledger, LedgerEntry, utc_now
    from comp.locks import upload_lock
    from comp.runs import load_run

    settings = ws.load_settings()
    settings.require_schema()
    data = load_run(ws, run, settings.output_names)
    sample = read_csv(ws.sample_submission_csv)
    problems = [] if force else value_kind_problems(settings, sample)
    if problems:
        raise ConfigError(
            f"the submission would hold the wrong kind of values, nothing was written or uploaded: "
            f"{'; '.join(problems)} (or pass --force to submit it anyway)"
        )
    if layout(settings) == "proba":
        thresholds, min_labels = None, settings.min_labels
    else:
        thresholds, min_labels = threshold_vector(data.thresholds, settings, ws.relative(ws.run(run).thresholds), run)
    frame = build_submission(data.test_ids, data.test, settings, sample, thresholds, min_labels)
    payload = validate_submission(frame, sample, settings).encode("utf-8")
    digest = sha256_bytes(payload)
    slug = settings.competition
    if not dry_run and not slug:
        raise ConfigError("comp.yaml has no competition slug; set competition: SLUG to upload (or pass --dry-run)")
    limits = None if dry_run else _limits(slug)
    if limits is not None:
        _refuse_when_none_left(limits, slug)
    metric, higher = score_metric(data.scores)

    with Ledger(ws.ledger_path) as ledger:
        if not dry_run and ledger.entries_with_status("uploading"):
            _reconcile(ws, ledger, slug)
        previous = ledger.uploaded_with_hash(digest)
        if previous is not None and not dry_run and not force:
            raise KaggleError(
                f"this submission is identical to #{previous.id} ({previous.file}, uploaded {previous.time[:16]}, "
                f"ref {previous.ref}); nothing was uploaded. Pass --force to upload it again"
            )
        unsure = [e for e in ledger.entries_with_status("uploading") if e.sha256 == digest]
        if unsure and not dry_run and not force:
            raise KaggleError(
                f"this submission is identical to #{unsure[0].id} ({unsure[0].file}), whose upload was interrupted and "
                "which Kaggle's list cannot confirm yet; run `comp lb` to check, or pass --force to upload it again"
            )
        path = _new_path(ws, run)
        cv = data.scores.get("cv") or {}
        entry = LedgerEntry(
            id=None,
            time=utc_now(),
            run=run,
            file=Path(ws.relative(path)).as_posix(),
            sha256=digest,
            message=message or default_message(run, data.scores),
            metric=metric,
            cv_tuned=_number(cv.get("tuned")),
            cv_honest=_number(cv.get("honest")),
            ref=None,
            status="dry-run" if dry_run else "uploading",
            public_score=None,
            private_score=None,
            note=None,
            higher_is_better=higher,
        )
        lock = None if dry_run else upload_lock(ws.submissions_dir, path.name)
        if lock is not None:
            lock.acquire()
        try:
            write_bytes(path, payload)
            try:
                entry = ledger.add(entry)
            except BaseException:
                path.unlink(missing_ok=True)  # no CSV without its ledger row
                raise
            outcome = SubmitOutcome(entry, path, len(frame), uploaded=False, duplicate_of=previous)
            if dry_run:
                return outcome
            try:
                result = kaggle_client.submit(slug, path, entry.message)
            except KaggleError as exc:
                ledger.update(entry.id, status="not uploaded", note=str(exc))
                raise KaggleError(
                    f"{exc} ({entry.file} was written and logged as ledger #{entry.id}, not uploaded)"
                ) from None
            outcome.entry = ledger.update(entry.id, ref=result.ref, status="pending", note=None)
        finally:
            if lock is not None:
                lock.release()
    outcome.uploaded, outcome.kaggle_message = True, result.message
    try:
        after = kaggle_client.submission_limits(slug)
    except KaggleError:
        after = None  # the upload succeeded; the count is only a courtesy
    if after is not None:
        outcome.left_today = max(0, after.num_allowed_now)
    elif limits is not None and (limits.num_today or limits.num_allowed_now):
        outcome.left_today = max(0, limits.num_allowed_now - 1)
    return outcome


def score_metric(scores: dict[str, Any]) -> tuple[str | None, bool | None]:
    """The metric of a run's scores.json and whether higher is better (its own field, else the metric's)."""
    from comp.metrics import METRICS

    metric = scores.get("metric")
    if not isinstance(metric, str):
        return None, None
    for key in ("greater_is_better", "higher_is_better"):
        if isinstance(scores.get(key), bool):
            return metric, scores[key]
    if scores.get("direction") in ("higher", "lower"):
        return metric, scores["direction"] == "higher"
    return metric, METRICS[metric].greater_is_better if metric in METRICS else None


def _limits(slug: str):
    from comp import kaggle_client

    try:
        return kaggle_client.submission_limits(slug)
    except KaggleError:
        return None  # the upload itself reports what is wrong (credentials, network) and logs it


def _refuse_when_none_left(limits, slug: str) -> None:
    """Kaggle's allowance is spent: upload nothing, and say when it comes back (00:00 UTC)."""
    from datetime import UTC, datetime, timedelta

    if limits.num_allowed_now > 0 or not (limits.num_today or limits.limited_by_total):
        return  # something left, or all zero: the team does not exist yet (its first submission makes it)
    if limits.limited_by_total:
        raise KaggleError(
            f"no submissions left for '{slug}': the competition's total allowance is used ({limits.num_total} made); "
            "nothing was written or uploaded"
        )
    now = datetime.now(UTC)
    reset = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = int((reset - now).total_seconds() // 60)
    raise KaggleError(
        f"no submissions left today for '{slug}' ({limits.num_today} made today); Kaggle resets the allowance at "
        f"00:00 UTC, in {minutes // 60} h {minutes % 60:02d} min. Nothing was written or uploaded "
        "(--dry-run writes and logs the file without uploading)"
    )


def _reconcile(ws: Workspace, ledger, slug: str) -> None:
    """Settle rows left ``uploading`` by a crash, from Kaggle's list (see comp.ledger.reconcile)."""
    from comp import kaggle_client
    from comp.ledger import reconcile
    from comp.locks import upload_in_progress

    try:
        kaggle = kaggle_client.list_submissions(slug)
    except KaggleError:
        return  # the duplicate check below refuses to upload an unconfirmed file again
    reconcile(ledger, kaggle, lambda entry: upload_in_progress(ws.submissions_dir, Path(entry.file).name))


def _new_path(ws: Workspace, run: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, k = ws.submission_csv(run, stamp), 2
    while path.exists():  # two submissions in one second
        path, k = ws.submission_csv(run, f"{stamp}_{k}"), k + 1
    return path


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
