"""The only module that talks to Kaggle: a thin layer over the official `kaggle` client (2.2.x).

Each function opens a comp.kaggle_session.session, which checks the credentials before the client
is imported and turns every failure into one `KaggleError` line that says what to do. No message, log
line or repr contains the key or token (comp.kaggle_credentials.redact).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from comp.errors import KaggleError
from comp.kaggle_session import one_line, session

# the official CLI's page size, so known to be accepted; the server may answer more or fewer rows
_PAGE_SIZE = 20
_MAX_PAGES = 1000


@dataclass(frozen=True)
class SubmitResult:
    ref: int
    message: str


@dataclass(frozen=True)
class KaggleSubmission:
    ref: int
    date: str  # ISO 8601, UTC
    description: str
    file_name: str
    status: str  # pending | complete | error
    public_score: float | None
    private_score: float | None
    error_description: str | None = None
    team_name: str | None = None


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int  # position on the leaderboard, from 1
    team_name: str
    score: float | None
    date: str  # ISO 8601, UTC
    team_id: int = 0


@dataclass(frozen=True)
class SubmissionLimits:
    num_today: int
    num_total: int
    num_allowed_now: int
    limited_by_total: bool = False  # the competition's total allowance, not today's, is what is left


# ---- public functions ----


def download_competition(slug: str, dest: Path) -> Path:
    """Download all data files of competition ``slug``; return ``dest/<slug>.zip`` (not unzipped).

    The client writes into a temporary folder inside ``dest``; the zip is renamed into place only once
    complete, so an interrupted download never leaves a partial zip where a finished one is expected.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with session(slug, "download the data of") as api:
        with tempfile.TemporaryDirectory(prefix=".kaggle-download-", dir=dest) as tmp:
            api.competition_download_files(slug, path=tmp, force=True, quiet=True)
            got = [p for p in Path(tmp).iterdir() if p.is_file() and not p.name.endswith(".kaggle-partial")]
            if not got:
                raise KaggleError(f"Kaggle sent no data file for competition '{slug}': retry `comp fetch` later")
            target = dest / got[0].name
            os.replace(got[0], target)
    return target


def submit(slug: str, file: Path, message: str) -> SubmitResult:
    """Upload ``file`` to competition ``slug`` with description ``message``; return Kaggle's ref."""
    file = Path(file)
    if not file.is_file():
        raise KaggleError(f"submission file {file} does not exist: build it first (comp submit RUN)")
    with session(slug, "submit to") as api:
        from kaggle.api.kaggle_api_extended import KaggleApi

        response = api.competition_submit(str(file), message, slug, quiet=True)
        ref = int(getattr(response, "ref", 0) or 0)
        text = one_line(getattr(response, "message", "") or "")
        if ref == 0 and text == KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
            raise KaggleError(f"the upload of {file.name} to Kaggle failed: retry later (nothing was submitted)")
        if ref == 0:
            raise KaggleError(
                f"Kaggle did not accept the submission to '{slug}': {text or 'no reason given'}; check the "
                "file against sample_submission.csv and today's submission limit, then retry"
            )
    return SubmitResult(ref=ref, message=text)


def list_submissions(slug: str) -> list[KaggleSubmission]:
    """Every submission of your team to ``slug``, newest first (all pages)."""
    with session(slug, "list your submissions to") as api:
        from kagglesdk.competitions.types.competition_api_service import ApiListSubmissionsRequest

        out: dict[int, KaggleSubmission] = {}
        page, token = 1, ""
        with api.build_kaggle_client() as client:
            for _ in range(_MAX_PAGES):
                request = ApiListSubmissionsRequest()
                request.competition_name = slug
                request.page_size = _PAGE_SIZE
                # follow nextPageToken when the server gives one, else page numbers while pages come
                # back full (the server is known to ignore pageSize) and bring something new
                if token:
                    request.page_token = token
                else:
                    request.page = page
                response = client.competitions.competition_api_client.list_submissions(request)
                new = [s for s in response.submissions or [] if s is not None and int(s.ref) not in out]
                for sub in new:
                    out[int(sub.ref)] = _submission(sub)
                next_token = response.next_page_token or ""
                short_page = len(response.submissions or []) < _PAGE_SIZE
                if not new or (not next_token and short_page) or (token and next_token == token):
                    break
                token, page = next_token, page + 1
    return list(out.values())


def leaderboard(slug: str, top: int = 20) -> list[LeaderboardEntry]:
    """The first ``top`` rows of the public leaderboard of ``slug``."""
    return _leaderboard_rows(slug, limit=top)


def team_entry(slug: str, team_name: str, max_rows: int = 20_000) -> LeaderboardEntry | None:
    """Your team's row on the public leaderboard (by exact team name), or None if not in the first rows."""
    for entry in _leaderboard_rows(slug, limit=max_rows, stop_at=team_name):
        if entry.team_name == team_name:
            return entry
    return None


def submission_limits(slug: str) -> SubmissionLimits | None:
    """Today's and total submission counts and how many are left; None if the client cannot tell."""
    with session(slug, "read the submission limits of") as api:
        if not hasattr(api, "competition_get_submission_limits"):
            return None
        limits = api.competition_get_submission_limits(slug)
        return SubmissionLimits(
            num_today=int(limits.num_today or 0),
            num_total=int(limits.num_total or 0),
            num_allowed_now=int(limits.num_allowed_now or 0),
            limited_by_total=bool(getattr(limits, "limited_by_total", False)),
        )


# ---- conversions ----


def _submission(sub: Any) -> KaggleSubmission:
    status = getattr(sub.status, "name", str(sub.status)).lower()
    return KaggleSubmission(
        ref=int(sub.ref),
        date=_iso(sub.date),
        description=sub.description or "",
        file_name=sub.file_name or "",
        status=status,
        public_score=_score(sub.public_score),
        private_score=_score(sub.private_score),
        error_description=sub.error_description or None,
        team_name=sub.team_name or None,
    )


def _leaderboard_rows(slug: str, limit: int, stop_at: str | None = None) -> list[LeaderboardEntry]:
    with session(slug, "read the leaderboard of") as api:
        from kagglesdk.competitions.types.competition_api_service import ApiGetLeaderboardRequest

        rows: list[LeaderboardEntry] = []
        token = ""
        with api.build_kaggle_client() as client:
            for _ in range(_MAX_PAGES):
                request = ApiGetLeaderboardRequest()
                request.competition_name = slug
                request.page_size = _PAGE_SIZE
                if token:
                    request.page_token = token
                response = client.competitions.competition_api_client.get_leaderboard(request)
                for row in response.submissions or []:
                    rows.append(
                        LeaderboardEntry(
                            rank=len(rows) + 1,
                            team_name=row.team_name or "",
                            score=_score(row.score),
                            date=_iso(row.submission_date),
                            team_id=int(row.team_id or 0),
                        )
                    )
                next_token = response.next_page_token or ""
                found = stop_at is not None and any(r.team_name == stop_at for r in rows)
                if len(rows) >= limit or found or not next_token or next_token == token:
                    break
                token = next_token
    return rows[:limit]


def _score(value: Any) -> float | None:
    """Kaggle sends scores as strings; an empty or unparsable one means not scored (yet)."""
    if value is None or str(value).strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _iso(value: Any) -> str:
    if isinstance(value, datetime):  # the client parses Kaggle's "...Z" into a naive UTC datetime
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat(timespec="seconds")
    return str(value or "")
