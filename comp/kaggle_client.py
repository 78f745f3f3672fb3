"""The only module that talks to Kaggle: a thin layer over the official `kaggle` client (2.2.x).

`import kaggle` authenticates at import time and prints a page of help when it cannot, so the client is
imported inside `_api()`, after `_find_credentials()` has checked that there is something to log in
with. Every failure becomes one `KaggleError` line that says what to do. No message, log line or repr
contains the key or token: messages are built here, and anything quoted from Kaggle is redacted.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from comp.errors import KaggleError

log = logging.getLogger(__name__)

NO_CREDENTIALS = (
    "no Kaggle credentials: put kaggle.json (from kaggle.com > Settings > API > Create New Token) in "
    "~/.kaggle/ (chmod 600) or set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN)"
)
RULES_URL = "https://www.kaggle.com/competitions/{slug}/rules"
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


@dataclass(frozen=True)
class _Credentials:
    source: str  # where they were found, for messages: "KAGGLE_USERNAME/KAGGLE_KEY", a file path, ...
    config_dir: Path
    secrets: tuple[str, ...] = field(repr=False)


# ---- public functions ----


def download_competition(slug: str, dest: Path) -> Path:
    """Download all data files of competition ``slug``; return ``dest/<slug>.zip`` (not unzipped).

    The client writes into a temporary folder inside ``dest``; the zip is renamed into place only once
    complete, so an interrupted download never leaves a partial zip where a finished one is expected.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with _session(slug, "download the data of") as api:
        with tempfile.TemporaryDirectory(prefix=".kaggle-download-", dir=dest) as tmp:
            api.competition_download_files(slug, path=tmp, force=True, quiet=True)
            got = [p for p in Path(tmp).iterdir() if p.is_file() and not p.name.endswith(".kaggle-partial")]
            if not got:
                raise KaggleError(
                    f"Kaggle sent no data file for competition '{slug}': retry `comp fetch` later"
                )
            target = dest / got[0].name
            os.replace(got[0], target)
    return target


def submit(slug: str, file: Path, message: str) -> SubmitResult:
    """Upload ``file`` to competition ``slug`` with description ``message``; return Kaggle's ref."""
    file = Path(file)
    if not file.is_file():
        raise KaggleError(f"submission file {file} does not exist: build it first (comp submit RUN)")
    with _session(slug, "submit to") as api:
        from kaggle.api.kaggle_api_extended import KaggleApi

        response = api.competition_submit(str(file), message, slug, quiet=True)
        ref = int(getattr(response, "ref", 0) or 0)
        text = _one_line(getattr(response, "message", "") or "")
        if ref == 0 and text == KaggleApi.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
            raise KaggleError(
                f"the upload of {file.name} to Kaggle failed: retry later (nothing was submitted)"
            )
        if ref == 0:
            raise KaggleError(
                f"Kaggle did not accept the submission to '{slug}': {text or 'no reason given'}; check the "
                "file against sample_submission.csv and today's submission limit, then retry"
            )
    return SubmitResult(ref=ref, message=text)


def list_submissions(slug: str) -> list[KaggleSubmission]:
    """Every submission of your team to ``slug``, newest first (all pages)."""
    with _session(slug, "list your submissions to") as api:
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
    with _session(slug, "read the submission limits of") as api:
        if not hasattr(api, "competition_get_submission_limits"):
            return None
        limits = api.competition_get_submission_limits(slug)
        return SubmissionLimits(
            num_today=int(limits.num_today or 0),
            num_total=int(limits.num_total or 0),
            num_allowed_now=int(limits.num_allowed_now or 0),
            limited_by_total=bool(getattr(limits, "limited_by_total", False)),
        )


# ---- credentials ----


def _config_dir() -> Path:
    """The kaggle client's rule for the folder of kaggle.json, evaluated now (it evaluates it at import)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path(os.path.expanduser("~/.kaggle"))
    if sys.platform.startswith("linux") and not home.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")) / "kaggle"
    return home


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _find_credentials() -> _Credentials:
    """What the kaggle client would log in with, in its order: access token, legacy key, OAuth login."""
    config_dir = _config_dir()
    kaggle_dir = Path(os.path.expanduser("~/.kaggle"))
    secrets: list[str] = []
    sources: list[str] = []

    token = os.environ.get("KAGGLE_API_TOKEN", "")
    if token:
        if Path(token).exists():  # the client accepts a path to a file holding the token
            token, source = _read_text(Path(token)), "the file named by KAGGLE_API_TOKEN"
        else:
            source = "KAGGLE_API_TOKEN"
    else:
        source = ""
        for name in ("access_token", "access_token.txt"):
            token = _read_text(kaggle_dir / name)
            if token:
                source = str(kaggle_dir / name)
                break
    if token:
        secrets.append(token)
        sources.append(source)

    file_values = _read_json(config_dir / "kaggle.json")
    username = os.environ.get("KAGGLE_USERNAME", file_values.get("username"))
    key = os.environ.get("KAGGLE_KEY", file_values.get("key"))
    secrets += [str(v) for v in (key, file_values.get("key")) if v]
    if username and key:
        from_env = "KAGGLE_USERNAME" in os.environ and "KAGGLE_KEY" in os.environ
        sources.append("KAGGLE_USERNAME/KAGGLE_KEY" if from_env else str(config_dir / "kaggle.json"))

    oauth = _read_json(kaggle_dir / "credentials.json")
    if oauth.get("refresh_token"):
        secrets += [str(oauth[k]) for k in ("refresh_token", "access_token") if oauth.get(k)]
        sources.append(str(kaggle_dir / "credentials.json"))

    if not sources:
        raise KaggleError(NO_CREDENTIALS)
    # the forms a secret takes on the wire: HTTP Basic is base64("user:key"), URLs percent-encode
    users = {str(u) for u in (username, file_values.get("username"), os.environ.get("KAGGLE_USERNAME")) if u}
    keys = {str(k) for k in (key, file_values.get("key")) if k}
    encoded = [_b64(f"{u}:{k}") for u in users for k in keys] + [_b64(v) for v in secrets if v]
    secrets += encoded + [e.rstrip("=") for e in encoded] + [quote(v, safe="") for v in secrets if v]
    # very short values would redact ordinary words out of messages; longest first, so that a value
    # containing another is redacted whole
    return _Credentials(sources[0], config_dir, tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# ---- the client ----


@contextlib.contextmanager
def _quiet(creds: _Credentials) -> Iterator[None]:
    """Swallow the client's prints (warnings, progress, auth help); keep them, redacted, in the debug log.

    With VERBOSE=1 at its import, the client prints a request with its Authorization header.
    """
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield
    finally:
        if buf.getvalue().strip():
            log.debug("kaggle client output: %s", _redact(buf.getvalue().strip(), creds))


def _api(creds: _Credentials):
    """An authenticated KaggleApi built from the environment as it is now."""
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except (Exception, SystemExit) as exc:
        raise KaggleError(
            _redact(
                f"the kaggle client could not be loaded ({_describe(exc)}): reinstall it with "
                "pip install 'kaggle>=2.2.4,<2.3'",
                creds,
            )
        ) from exc
    api = KaggleApi()
    # the class reads these at import; a fresh read lets one process switch settings (and tests run)
    api.config_dir = str(creds.config_dir)
    api.config = str(creds.config_dir / "kaggle.json")
    # never "--verbose": it prints every request with its Authorization header
    api.args = ["--local"] if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST" else []
    try:
        api.authenticate()
    except SystemExit:  # the client calls exit(1) when nothing it found logs in
        raise KaggleError(
            f"Kaggle did not accept the credentials from {creds.source}: create a new token "
            "(kaggle.com > Settings > API > Create New Token) and replace the old one"
        ) from None
    return api


@contextlib.contextmanager
def _session(slug: str, action: str):
    """Yield an authenticated KaggleApi; turn whatever the client raises into one KaggleError line."""
    creds = _find_credentials()
    with _quiet(creds):
        try:
            yield _api(creds)
        except KaggleError as exc:
            exc.args = (_redact(str(exc), creds),)
            raise
        except Exception as exc:
            # not chained: the client's exception may quote a server message that holds a secret
            log.debug("kaggle client error: %s", _redact(_describe(exc), creds))
            raise _translate(exc, creds, slug, action) from None


def _translate(exc: Exception, creds: _Credentials, slug: str, action: str) -> KaggleError:
    import requests

    response = getattr(exc, "response", None)
    transient = False
    if isinstance(exc, requests.HTTPError) and response is not None:
        status = response.status_code
        transient = status >= 500  # a 429 asks to slow down for a minute or more: not worth a poll loop
        if status == 401:
            msg = (
                f"Kaggle rejected the credentials from {creds.source} (401): create a new token "
                "(kaggle.com > Settings > API > Create New Token) and replace the old one"
            )
        elif status == 403:
            msg = (
                f"Kaggle refused to {action} '{slug}' (403): accept the competition rules at "
                f"{RULES_URL.format(slug=slug)} with the same account, then retry"
            )
        elif status == 404:
            msg = (
                f"no competition '{slug}' on Kaggle (404): check the slug in comp.yaml "
                "(the part after /competitions/ in the competition's address)"
            )
        elif status == 429:
            wait = response.headers.get("Retry-After")
            msg = f"Kaggle rate limit reached (429) trying to {action} '{slug}': retry later" + (
                f" (Kaggle asks to wait {wait} s)" if wait else ""
            )
        else:
            msg = f"Kaggle answered {status} when asked to {action} '{slug}': {_server_message(exc)}; retry later"
    elif isinstance(exc, requests.ConnectionError | requests.Timeout):
        transient = True
        msg = f"could not reach Kaggle: {_network_reason(exc)}; check your connection or proxy (HTTPS_PROXY) and retry"
    else:
        msg = f"the kaggle client failed to {action} '{slug}': {_describe(exc)}"
    return KaggleError(_redact(msg, creds), transient=transient)


# ---- conversions and message helpers ----


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
    with _session(slug, "read the leaderboard of") as api:
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


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: BaseException) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _server_message(exc: Exception) -> str:
    try:
        message = exc.response.json().get("message")
    except Exception:  # not JSON: a proxy's or load balancer's page
        message = None
    return _one_line(message or str(exc) or "no details")


def _network_reason(exc: Exception) -> str:
    import requests

    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    reason = found.group(1).strip() if found else ("timed out" if isinstance(exc, requests.Timeout) else "")
    reason = reason or type(exc).__name__
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"cannot connect to the proxy ({reason})"
    return reason


# whatever follows an auth scheme is a credential, even one comp did not find (a proxy's, another user's)
_AUTH_SCHEME = re.compile(r"(?i)\b(basic|bearer)(\s+)([A-Za-z0-9+/=._~-]{8,})")
_AUTH_FIELD = re.compile(r"(?i)\b(token|key|password|secret)([\"']?\s*[:=]\s*[\"']?)([^\s\"',;&]{4,})")


def _redact(text: str, creds: _Credentials) -> str:
    for secret in creds.secrets:
        text = text.replace(secret, "***")
    text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _AUTH_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
