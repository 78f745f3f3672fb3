"""A fake Kaggle API server for tests: speaks the RPC protocol of the real `kaggle` client (2.2.x).

Every API call of the client is ``POST <endpoint>/[api/]v1/<service>/<Method>`` with a camelCase JSON
body; errors are ``{"code": N, "message": ...}`` with HTTP status N. Data downloads answer 302 to a
``.zip`` URL; uploads are a PUT of the raw bytes to the ``createUrl`` the server handed out.

How the client finds it
    The ``fake_kaggle`` fixture (tests/conftest.py) sets ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` (the
    client then calls ``http://localhost/api/v1/...``) and ``HTTP_PROXY`` = this server, so every
    request (RPCs, the download redirect, the upload PUT) reaches it as a forward proxy. This works in
    the test process and in any subprocess that inherits ``os.environ`` (``comp`` run as a command).
    ``HTTPS_PROXY`` points here too and CONNECT is refused, so nothing can reach the real site.
    ``server.env()`` returns these variables plus the credentials, for building a subprocess env.

API (all state is plain attributes; tests may read or change them)
    server = FakeKaggle(username="alice", key=..., token=...); server.start(); ...; server.stop()
    server.url                    ``http://127.0.0.1:PORT``
    server.username / .key        accepted HTTP Basic credentials (legacy kaggle.json key)
    server.token                  accepted ``Authorization: Bearer`` token (KAGGLE_API_TOKEN)
    server.add_competition(slug, files={name: bytes|str}, answer=None, scorer=None,
                           rules_accepted=True, polls_until_complete=0, leaderboard=[(team, score)],
                           daily_limit=5, team_name=None, higher_is_better=True, show_private=True)
        -> FakeCompetition (also ``server.competitions[slug]``).
        ``scorer(submission_bytes, answer_bytes) -> (public, private)`` scores each upload (floats or
        None; shown as Kaggle does, strings with 5 decimals). A scorer that raises turns the submission
        into status ERROR with the exception text as errorDescription. Without a scorer, scores are "".
        A new submission is listed as PENDING by the first ``polls_until_complete`` ListSubmissions
        calls (pages) for that competition, then COMPLETE or ERROR (0: final at once).
        ``leaderboard``: other teams; your team (``team_name`` or the username) joins it with its best
        public score once a submission is COMPLETE.
    server.zip_bytes(slug)        the exact bytes DownloadDataFiles serves (deterministic zip)
    server.submissions(slug)      FakeSubmission list, oldest first (ref, file_name, description,
                                  content, status (final), listed_status, public_score, polls_left, ...)
    server.add_submission(slug, content=b"", description="", public=None, private=None,
                          file_name="submission.csv", date=None, polls=0) -> FakeSubmission
        put a submission in the history without uploading (dates are UTC)
    server.complete(ref, public=None, private=None, error=None)   finish a submission by hand
    server.fail_next(method, code, message=None, times=1)
        the next ``times`` calls of RPC ``method`` ("DownloadDataFiles", "CreateSubmission", ...;
        "*" = any RPC) answer error ``code``; 429 answers carry ``Retry-After: 60``.
    server.reject_next_submission(message)   CreateSubmission answers ``{"message": m, "ref": 0}``
    server.fail_next_upload(status=500)      the next upload PUT answers ``status``
    server.hang_next(method)                the next call of RPC ``method`` does its work (CreateSubmission
                                  records the submission) and then does not answer until
                                  ``server.release()``: a client killed meanwhile never hears back
    server.limits_sequence = [dict, ...]    GetSubmissionLimits answers these (camelCase keys), one per
                                  call, before computing them from ``daily_limit`` / ``total_limit``
    server.rate_limited = True              every RPC answers 429 until set back to False
    server.list_paging = "token" | "page"   ListSubmissions paging: nextPageToken, or page numbers only
    server.calls                  FakeCall(service, method, body, auth) per RPC, in order;
                                  ``auth`` is the username, "token", or None when rejected/absent
"""

from __future__ import annotations

import base64
import email.utils
import io
import itertools
import json
import threading
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_ZIP_DATE = (2024, 3, 1, 12, 0, 0)
_LAST_MODIFIED = email.utils.formatdate(datetime(2024, 3, 1, 12, tzinfo=UTC).timestamp(), usegmt=True)
_DEFAULT_MESSAGES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Permission denied: you must accept this competition's rules before you can use it",
    404: "Not found",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}

Scorer = Callable[[bytes, bytes | None], tuple[float | None, float | None]]


@dataclass
class FakeSubmission:
    ref: int
    competition: str
    file_name: str
    description: str
    content: bytes
    date: datetime
    status: str = "COMPLETE"  # the final status, COMPLETE | ERROR; listed as PENDING while polls_left > 0
    public_score: str = ""
    private_score: str = ""
    error_description: str = ""
    polls_left: int = 0

    @property
    def listed_status(self) -> str:
        return "PENDING" if self.polls_left > 0 else self.status


@dataclass
class FakeCompetition:
    slug: str
    files: dict[str, bytes]
    answer: bytes | None = None
    scorer: Scorer | None = None
    rules_accepted: bool = True
    polls_until_complete: int = 0
    leaderboard: list[tuple[str, float]] = field(default_factory=list)
    daily_limit: int = 5
    total_limit: int | None = None  # the competition's allowance over its whole run, if any
    team_name: str | None = None
    higher_is_better: bool = True
    show_private: bool = True


@dataclass
class FakeCall:
    service: str
    method: str
    body: dict
    auth: str | None


class _Reply(Exception):
    """Raised inside a handler to answer with an error."""

    def __init__(self, code: int, message: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.message = message or _DEFAULT_MESSAGES.get(code, "error")
        self.headers = headers or {}


class FakeKaggle:
    def __init__(self, username: str = "alice", key: str = "fake-key-7d1c9e", token: str = "KGAT_fake_token_52ab"):
        self.username = username
        self.key = key
        self.token = token
        self.competitions: dict[str, FakeCompetition] = {}
        self.calls: list[FakeCall] = []
        self.rate_limited = False
        self.list_paging = "token"
        self.limits_sequence: list[dict] = []
        self._hang: list[str] = []
        self._released = threading.Event()
        self._subs: list[FakeSubmission] = []
        self._uploads: dict[str, dict] = {}
        self._failures: list[list] = []  # [method, code, message, times]
        self._rejections: list[str] = []
        self._upload_failures: list[int] = []
        self._refs = itertools.count(40_000_001)
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----
    def start(self) -> FakeKaggle:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def env(self) -> dict[str, str]:
        """Variables that point a `kaggle` client (in any process) at this server, with credentials."""
        return {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "HTTP_PROXY": self.url,
            "http_proxy": self.url,
            "HTTPS_PROXY": self.url,
            "https_proxy": self.url,
            "KAGGLE_USERNAME": self.username,
            "KAGGLE_KEY": self.key,
        }

    # ---- configuration ----
    def add_competition(
        self,
        slug: str,
        files: dict[str, bytes | str] | None = None,
        answer: bytes | str | None = None,
        scorer: Scorer | None = None,
        **settings,
    ) -> FakeCompetition:
        files = {name: data.encode() if isinstance(data, str) else data for name, data in (files or {}).items()}
        if isinstance(answer, str):
            answer = answer.encode()
        comp = FakeCompetition(slug, files, answer, scorer, **settings)
        self.competitions[slug] = comp
        return comp

    def fail_next(self, method: str, code: int, message: str | None = None, times: int = 1) -> None:
        with self._lock:
            self._failures.append([method, code, message, times])

    def reject_next_submission(self, message: str = "Submission rejected") -> None:
        with self._lock:
            self._rejections.append(message)

    def fail_next_upload(self, status: int = 500) -> None:
        with self._lock:
            self._upload_failures.append(status)

    def hang_next(self, method: str) -> None:
        with self._lock:
            self._released.clear()
            self._hang.append(method)

    def release(self) -> None:
        self._released.set()

    # ---- inspection ----
    def zip_bytes(self, slug: str) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in sorted(self.competitions[slug].files.items()):
                zf.writestr(zipfile.ZipInfo(name, date_time=_ZIP_DATE), data)
        return buf.getvalue()

    def submissions(self, slug: str) -> list[FakeSubmission]:
        with self._lock:
            return [s for s in self._subs if s.competition == slug]

    def add_submission(
        self,
        slug: str,
        content: bytes = b"",
        description: str = "",
        public=None,
        private=None,
        file_name: str = "submission.csv",
        date: datetime | None = None,
        polls: int = 0,
    ) -> FakeSubmission:
        """Put a submission in the history directly (no upload); returns it (``.ref``)."""
        with self._lock:
            sub = FakeSubmission(
                ref=next(self._refs),
                competition=slug,
                file_name=file_name,
                description=description,
                content=content,
                date=date or datetime.now(UTC).replace(microsecond=0),
                public_score=_fmt(public),
                private_score=_fmt(private),
                polls_left=polls,
            )
            self._subs.append(sub)
            return sub

    def complete(self, ref: int, public=None, private=None, error: str | None = None) -> None:
        with self._lock:
            sub = next(s for s in self._subs if s.ref == ref)
            sub.polls_left = 0
            if error is not None:
                sub.status, sub.error_description = "ERROR", error
            else:
                sub.status, sub.public_score, sub.private_score = "COMPLETE", _fmt(public), _fmt(private)

    # ---- request handling (called from the server threads) ----
    def _rpc(self, service: str, method: str, body: dict, auth_header: str | None, host: str):
        with self._lock:
            user = self._check_auth(auth_header)
            self.calls.append(FakeCall(service, method, body, user))
            if self.rate_limited:
                raise _Reply(429, headers={"Retry-After": "60"})
            for failure in self._failures:
                if failure[0] in (method, "*"):
                    failure[3] -= 1
                    if failure[3] <= 0:
                        self._failures.remove(failure)
                    raise _Reply(failure[1], failure[2], {"Retry-After": "60"} if failure[1] == 429 else None)
            if user is None:
                raise _Reply(401)
            if service == "security.OAuthService" and method == "IntrospectToken":
                active = body.get("token") == self.token
                return {"active": active, "username": self.username if active else ""}
            handler = getattr(self, f"_do_{method}", None)
            if service != "competitions.CompetitionApiService" or handler is None:
                raise _Reply(404, f"no such method {service}/{method}")
            result = handler(body, host)
            if method in self._hang:
                self._hang.remove(method)
                return _Hang(result)
            return result

    def _check_auth(self, header: str | None) -> str | None:
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme == "Bearer":
            return "token" if self.token and value == self.token else None
        if scheme == "Basic":
            try:
                user, _, key = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None
            return user if (user, key) == (self.username, self.key) else None
        return None

    def _competition(self, body: dict, needs_rules: bool = False) -> FakeCompetition:
        comp = self.competitions.get(body.get("competitionName", ""))
        if comp is None:
            raise _Reply(404, "Competition not found")
        if needs_rules and not comp.rules_accepted:
            raise _Reply(403)
        return comp

    def _do_DownloadDataFiles(self, body, host):
        comp = self._competition(body, needs_rules=True)
        return _Redirect(f"http://{host}/files/{comp.slug}.zip")

    def _do_StartSubmissionUpload(self, body, host):
        self._competition(body, needs_rules=True)
        token = uuid.uuid4().hex
        self._uploads[token] = {"fileName": body.get("fileName", ""), "content": None}
        return {"token": token, "createUrl": f"http://{host}/upload/{token}"}

    def _do_CreateSubmission(self, body, host):
        comp = self._competition(body, needs_rules=True)
        upload = self._uploads.get(body.get("blobFileTokens", ""))
        if upload is None or upload["content"] is None:
            raise _Reply(400, "Unknown or incomplete upload token")
        if self._rejections:
            return {"message": self._rejections.pop(0), "ref": 0}
        today = datetime.now(UTC).date()
        if sum(s.competition == comp.slug and s.date.date() == today for s in self._subs) >= comp.daily_limit:
            raise _Reply(400, f"Your team has used its daily Submission allowance ({comp.daily_limit}) today")
        sub = FakeSubmission(
            ref=next(self._refs),
            competition=comp.slug,
            file_name=upload["fileName"],
            description=body.get("submissionDescription", ""),
            content=upload["content"],
            date=datetime.now(UTC).replace(microsecond=0),
            polls_left=comp.polls_until_complete,
        )
        if comp.scorer is not None:
            try:
                public, private = comp.scorer(sub.content, comp.answer)
                sub.public_score, sub.private_score = _fmt(public), _fmt(private)
            except Exception as exc:  # the scorer plays Kaggle's validator: any failure is an ERROR
                sub.status, sub.error_description = "ERROR", str(exc)
        self._subs.append(sub)
        return {"message": f"Successfully submitted to {comp.slug}", "ref": sub.ref}

    def _do_ListSubmissions(self, body, host):
        comp = self._competition(body)
        mine = [s for s in self._subs if s.competition == comp.slug]
        items = [self._submission_json(s, comp) for s in reversed(mine)]  # newest first
        for sub in mine:  # each call (each page) is one poll
            sub.polls_left = max(0, sub.polls_left - 1)
        size = int(body.get("pageSize") or 20)
        if self.list_paging == "token":
            start = int(body.get("pageToken") or 0)
        else:
            start = (int(body.get("page") or 1) - 1) * size
        page = items[start : start + size]
        more = self.list_paging == "token" and start + size < len(items)
        return {"submissions": page, "nextPageToken": str(start + size) if more else ""}

    def _submission_json(self, sub: FakeSubmission, comp: FakeCompetition) -> dict:
        status = sub.listed_status
        out = {
            "ref": sub.ref,
            "date": sub.date.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "description": sub.description,
            "fileName": sub.file_name,
            "status": status,
            "totalBytes": len(sub.content),
            "teamName": comp.team_name or self.username,
            "submittedBy": self.username,
        }
        if status == "COMPLETE":
            out["publicScore"] = sub.public_score
            out["privateScore"] = sub.private_score if comp.show_private else ""
        if status == "ERROR":
            out["errorDescription"] = sub.error_description
        return out

    def _do_GetLeaderboard(self, body, host):
        comp = self._competition(body)
        rows = [(name, float(score), "2024-03-01T12:00:00.000Z") for name, score in comp.leaderboard]
        mine = [
            s for s in self._subs if s.competition == comp.slug and s.listed_status == "COMPLETE" and s.public_score
        ]
        if mine:
            pick = max if comp.higher_is_better else min
            best = pick(mine, key=lambda s: float(s.public_score))
            date = best.date.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            rows.append((comp.team_name or self.username, float(best.public_score), date))
        rows.sort(key=lambda r: r[1], reverse=comp.higher_is_better)
        size = int(body.get("pageSize") or 20)
        start = int(body.get("pageToken") or 0)
        page = [
            {"teamId": 1000 + i, "teamName": name, "submissionDate": date, "score": _fmt(score)}
            for i, (name, score, date) in enumerate(rows)
        ][start : start + size]
        return {"submissions": page, "nextPageToken": str(start + size) if start + size < len(rows) else ""}

    def _do_GetSubmissionLimits(self, body, host):
        comp = self._competition(body)
        if self.limits_sequence:
            return self.limits_sequence.pop(0)
        today = datetime.now(UTC).date()
        mine = [s for s in self._subs if s.competition == comp.slug]
        num_today = sum(s.date.date() == today for s in mine)
        daily_left = max(0, comp.daily_limit - num_today)
        total_left = daily_left if comp.total_limit is None else max(0, comp.total_limit - len(mine))
        return {
            "numToday": num_today,
            "numTotal": len(mine),
            "numAllowedNow": min(daily_left, total_left),
            "limitedByTotal": total_left < daily_left,
        }

    def _upload(self, token: str, data: bytes) -> int:
        with self._lock:
            if self._upload_failures:
                return self._upload_failures.pop(0)
            if token not in self._uploads:
                return 404
            self._uploads[token]["content"] = data
            return 200

    def _download(self, name: str) -> bytes | None:
        slug = name.removesuffix(".zip")
        if not name.endswith(".zip") or slug not in self.competitions:
            return None
        return self.zip_bytes(slug)


@dataclass
class _Redirect:
    location: str


@dataclass
class _Hang:
    result: object  # answered only once FakeKaggle.release() is called


def _fmt(score) -> str:
    return "" if score is None else f"{float(score):.5f}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeKaggle  # set on the subclass made by FakeKaggle.start

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, obj, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def do_CONNECT(self):  # https through the proxy: never let a test reach the real site
        self._send(405, b"the fake Kaggle server does not tunnel https")
        self.close_connection = True

    def do_POST(self):
        body = self._read_body()
        parts = urlsplit(self.path).path.strip("/").split("/")
        if parts[:1] == ["api"]:
            parts = parts[1:]
        if len(parts) != 3 or parts[0] != "v1":
            self._send_json(404, {"code": 404, "message": f"unknown path {self.path}"})
            return
        try:
            payload = json.loads(body or b"{}")
            result = self.fake._rpc(parts[1], parts[2], payload, self.headers.get("Authorization"), self._host())
        except _Reply as reply:
            self._send_json(reply.code, {"code": reply.code, "message": reply.message}, reply.headers)
            return
        if isinstance(result, _Hang):  # outside the server's lock: other requests keep being answered
            self.fake._released.wait(timeout=120)
            result = result.result
        if isinstance(result, _Redirect):
            self._send(302, headers={"Location": result.location})
        else:
            self._send_json(200, result)

    def do_GET(self):
        path = urlsplit(self.path).path
        data = self.fake._download(path.removeprefix("/files/")) if path.startswith("/files/") else None
        if data is None:
            self._send(404, b"not found")
            return
        self._send(200, data, {"Content-Type": "application/zip", "Last-Modified": _LAST_MODIFIED})

    def do_PUT(self):
        data = self._read_body()
        path = urlsplit(self.path).path
        status = self.fake._upload(path.removeprefix("/upload/"), data) if path.startswith("/upload/") else 404
        self._send_json(status, {} if status == 200 else {"code": status, "message": "upload failed"})

    def _host(self) -> str:
        return self.headers.get("Host") or "localhost"
