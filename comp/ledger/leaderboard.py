"""`comp lb`: the ledger refreshed from Kaggle's list, interrupted uploads settled, and the
correlation of CV with the public leaderboard.

Only CVs measured with the competition's metric are compared with the leaderboard and correlated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import pearsonr, spearmanr

from comp.errors import CompError, KaggleError
from comp.ledger.store import REFRESHED, Ledger, LedgerEntry

if TYPE_CHECKING:
    from comp.kaggle_client import KaggleSubmission, LeaderboardEntry
    from comp.workspace import Workspace


def refresh(ledger: Ledger, kaggle: list[KaggleSubmission]) -> tuple[int, list[KaggleSubmission]]:
    """Copy status and scores from Kaggle's list onto the ledger's pending and complete rows.

    Returns the number of rows changed and the Kaggle submissions the ledger does not know (made on
    the website or from another workspace).
    """
    by_ref = {sub.ref: sub for sub in kaggle}
    entries = ledger.entries()
    known = {e.ref for e in entries if e.ref is not None}
    changes: dict[int, dict[str, Any]] = {}
    for entry in entries:
        sub = by_ref.get(entry.ref) if entry.ref is not None else None
        if sub is None or entry.status not in REFRESHED:
            continue
        new = {
            "status": sub.status,
            "public_score": sub.public_score,
            "private_score": sub.private_score,
            "note": sub.error_description,
        }
        changed = {k: v for k, v in new.items() if getattr(entry, k) != v}
        if changed:
            changes[entry.id] = changed
    ledger.update_many(changes)
    return len(changes), [sub for sub in kaggle if sub.ref not in known]


def reconcile(ledger: Ledger, kaggle: list[KaggleSubmission], in_progress: Callable[[LedgerEntry], bool]) -> int:
    """Settle the rows left ``uploading`` by a crash or kill during `comp submit`, from Kaggle's list.

    A row whose upload is still running (``in_progress``: its upload lock is held) is left alone.
    Otherwise the Kaggle submission with the row's file name and description, made at or after the
    row's time (minus 10 minutes of clock skew) and not yet in the ledger, is the row's: its ref,
    status and scores are recorded. With no such submission, Kaggle never got the file: the row
    becomes ``not uploaded``. Returns the number of rows settled.
    """
    known = {e.ref for e in ledger.entries() if e.ref is not None}
    changes: dict[int, dict[str, Any]] = {}
    claimed: set[int] = set()
    for entry in ledger.entries_with_status("uploading"):
        if in_progress(entry):
            continue
        since = _parse_time(entry.time) - 600
        matches = [
            sub
            for sub in kaggle
            if sub.ref not in known
            and sub.ref not in claimed
            and sub.file_name == Path(entry.file).name
            and sub.description == entry.message
            and _parse_time(sub.date) >= since
        ]
        if matches:
            sub = min(matches, key=lambda s: (_parse_time(s.date), s.ref))
            claimed.add(sub.ref)
            changes[entry.id] = {
                "ref": sub.ref,
                "status": sub.status,
                "public_score": sub.public_score,
                "private_score": sub.private_score,
                "note": sub.error_description or "the upload was interrupted after Kaggle received it",
            }
        else:
            changes[entry.id] = {
                "status": "not uploaded",
                "note": "the upload was interrupted before Kaggle received the file; "
                f"`comp submit {entry.run}` uploads it again",
            }
    ledger.update_many(changes)
    return len(changes)


def _parse_time(text: str) -> float:
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


@dataclass
class Correlation:
    n: int
    pearson_tuned: float | None
    pearson_honest: float | None
    spearman_honest: float | None


def correlation(entries: list[LedgerEntry], metric: str | None = None) -> Correlation | None:
    """Correlation of CV with the public LB over submissions that have both (None below three).

    Only CVs of one metric are correlated: ``metric`` (the competition's, which the leaderboard
    uses), or else the metric most submissions were scored with.
    """
    scored = [e for e in entries if e.public_score is not None and e.cv is not None]
    if metric is None and scored:
        metrics = [e.metric for e in scored]
        metric = max(dict.fromkeys(metrics), key=metrics.count)
    scored = [e for e in scored if e.metric == metric or (e.metric is None and metric is None)]
    if len(scored) < 3:
        return None

    lb = np.array([e.public_score for e in scored], dtype=float)

    def coefficient(test, cv: list[float | None]) -> float | None:
        if any(v is None for v in cv):
            return None
        x = np.asarray(cv, dtype=float)
        if np.ptp(x) == 0 or np.ptp(lb) == 0:
            return None  # undefined for a constant series (scipy would warn and give NaN)
        return float(test(x, lb).statistic)

    honest = [e.cv_honest for e in scored]
    return Correlation(
        len(scored),
        coefficient(pearsonr, [e.cv_tuned for e in scored]),
        coefficient(pearsonr, honest),
        coefficient(spearmanr, honest),
    )


@dataclass
class LbReport:
    entries: list[LedgerEntry]
    correlation: Correlation | None = None
    updated: int = 0
    not_in_ledger: list[KaggleSubmission] = field(default_factory=list)
    leaderboard: list[LeaderboardEntry] | None = None
    team_name: str | None = None
    my_entry: LeaderboardEntry | None = None
    warnings: list[str] = field(default_factory=list)
    waited_out: LedgerEntry | None = None  # the newest submission, still pending when --wait gave up
    metric: str | None = None  # the competition's: the leaderboard's metric
    reconciled: int = 0  # rows an interrupted upload had left "uploading", settled from Kaggle's list

    def comparable(self, entry: LedgerEntry) -> bool:
        """Whether the entry's CV was measured with the leaderboard's metric (so LB - CV means something)."""
        return entry.metric is None or self.metric is None or entry.metric == self.metric


def lb_report(
    ws: Workspace,
    offline: bool = False,
    wait: bool = False,
    top: int | None = None,
    timeout: float = 900.0,
    interval: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
) -> LbReport:
    """Refresh the ledger from Kaggle (unless ``offline``) and gather what `comp lb` prints.

    ``wait`` polls every ``interval`` seconds, at most ``timeout`` seconds, until the newest uploaded
    submission is no longer pending; a transient failure (5xx, network) is retried with backoff
    within ``timeout``. Without ``wait`` a Kaggle failure is a warning: the ledger as recorded is
    still shown. ``offline`` reads the ledger without taking a write lock.
    """
    from comp import kaggle_client
    from comp.locks import upload_in_progress

    if offline and (wait or top):
        raise CompError("--wait and --top need Kaggle; drop --offline")
    settings = ws.load_settings()
    slug = settings.competition
    report = LbReport(entries=[], metric=settings.metric)
    with Ledger(ws.ledger_path, readonly=offline) as ledger:
        if not offline and not slug:
            report.warnings.append("comp.yaml has no competition slug: showing the ledger without refreshing it")
        elif not offline:
            newest = _newest_uploaded(ledger.entries())
            if wait and newest is None:
                raise CompError("nothing to wait for: no submission in the ledger was uploaded (`comp submit RUN`)")
            kaggle: list[KaggleSubmission] = []
            started = time.monotonic()
            backoff = first_backoff = max(interval, 0.5)  # seconds; doubles after each failure
            while True:
                try:
                    kaggle = kaggle_client.list_submissions(slug)
                except KaggleError as exc:
                    left = timeout - (time.monotonic() - started)
                    if wait and exc.transient and left > 0:
                        report.warnings.append(f"{exc} (retrying in {min(backoff, left):.1f} s)")
                        sleep(min(backoff, left))
                        backoff = min(backoff * 2, 300.0)
                        continue
                    if wait or top:
                        raise
                    report.warnings.append(f"{exc} (showing the ledger as recorded; --offline skips Kaggle)")
                    break
                backoff = first_backoff
                report.reconciled += reconcile(
                    ledger, kaggle, lambda e: upload_in_progress(ws.submissions_dir, Path(e.file).name)
                )
                updated, report.not_in_ledger = refresh(ledger, kaggle)
                report.updated += updated
                if not wait or ledger.get(newest.id).status not in ("pending", "uploading"):
                    break
                if time.monotonic() - started + interval > timeout:
                    report.waited_out = ledger.get(newest.id)
                    break
                sleep(interval)
            if top:
                report.team_name = next((s.team_name for s in kaggle if s.team_name), None)
                report.leaderboard = kaggle_client.leaderboard(slug, top)
                if report.team_name:
                    mine = [e for e in report.leaderboard if e.team_name == report.team_name]
                    report.my_entry = mine[0] if mine else kaggle_client.team_entry(slug, report.team_name)
        report.entries = ledger.entries()
    report.correlation = correlation(report.entries, settings.metric)
    return report


def _newest_uploaded(entries: list[LedgerEntry]) -> LedgerEntry | None:
    uploaded = [e for e in entries if e.ref is not None]
    return uploaded[-1] if uploaded else None
