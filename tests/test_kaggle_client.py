"""comp.kaggle_client against the fake Kaggle server: the real `kaggle` client end to end over HTTP."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from comp import kaggle_client as kc
from comp.errors import KaggleError
from comp.kaggle_credentials import find_credentials

SLUG = "emotion-detection-spring-2024"


def _csv_scorer(submission: bytes, answer: bytes | None) -> tuple[float, float]:
    """Fraction of rows equal to the answer key; public = first half, private = second half."""
    got = submission.decode().splitlines()[1:]
    want = answer.decode().splitlines()[1:]
    if len(got) != len(want):
        raise ValueError(f"Submission has {len(got)} rows, expected {len(want)}")
    hits = [g == w for g, w in zip(got, want, strict=True)]
    half = len(hits) // 2
    return sum(hits[:half]) / half, sum(hits[half:]) / (len(hits) - half)


ANSWER = "id,label\n1,a\n2,b\n3,a\n4,b\n"


@pytest.fixture
def server(fake_kaggle):
    fake_kaggle.add_competition(
        SLUG,
        files={"train.csv": "id,text,label\n1,hi,a\n", "test.csv": "id,text\n1,yo\n"},
        answer=ANSWER,
        scorer=_csv_scorer,
        leaderboard=[("team top", 0.91), ("team low", 0.12)],
    )
    return fake_kaggle


@pytest.fixture
def sub_file(tmp_path) -> Path:
    path = tmp_path / "blend1.csv"
    path.write_text("id,label\n1,a\n2,a\n3,a\n4,b\n")  # public 0.5, private 1.0
    return path


def _raises(match: str, fn, *args) -> KaggleError:
    with pytest.raises(KaggleError, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return info.value


# ---- happy paths ----


def test_download_round_trip(server, tmp_path):
    dest = tmp_path / "data"
    path = kc.download_competition(SLUG, dest)
    assert path == dest / f"{SLUG}.zip"
    assert path.read_bytes() == server.zip_bytes(SLUG)
    assert sorted(p.name for p in dest.iterdir()) == [path.name]  # temp folder gone
    assert [c.method for c in server.calls] == ["DownloadDataFiles"]
    assert server.calls[0].body == {"competitionName": SLUG}


def test_submit_uploads_exact_bytes_and_description(server, sub_file):
    result = kc.submit(SLUG, sub_file, "blend of 3")
    (stored,) = server.submissions(SLUG)
    assert result == kc.SubmitResult(ref=stored.ref, message=f"Successfully submitted to {SLUG}")
    assert stored.content == sub_file.read_bytes()
    assert stored.description == "blend of 3"
    assert stored.file_name == "blend1.csv"
    assert [c.method for c in server.calls] == ["StartSubmissionUpload", "CreateSubmission"]


def test_list_submissions_parses_scores_and_status(server, sub_file, tmp_path):
    first = kc.submit(SLUG, sub_file, "good")
    bad = tmp_path / "short.csv"
    bad.write_text("id,label\n1,a\n")
    second = kc.submit(SLUG, bad, "too short")
    server.add_submission(SLUG, description="unscored")  # scores ""

    unscored, errored, scored = kc.list_submissions(SLUG)  # newest first
    assert scored.ref == first.ref and errored.ref == second.ref
    assert (scored.status, scored.public_score, scored.private_score) == ("complete", 0.5, 1.0)
    assert (scored.description, scored.file_name, scored.team_name) == ("good", "blend1.csv", "alice")
    assert errored.status == "error" and errored.public_score is None
    assert errored.error_description == "Submission has 1 rows, expected 4"
    assert (unscored.public_score, unscored.private_score) == (None, None)
    assert unscored.date.endswith("+00:00") and unscored.date[:4].isdigit()


def test_pending_submission_completes_after_polls(server, sub_file):
    server.competitions[SLUG].polls_until_complete = 2
    kc.submit(SLUG, sub_file, "wait for me")
    seen = [kc.list_submissions(SLUG)[0] for _ in range(3)]
    assert [s.status for s in seen] == ["pending", "pending", "complete"]
    assert seen[0].public_score is None and seen[2].public_score == 0.5


@pytest.mark.parametrize("paging", ["token", "page"])
def test_list_submissions_reads_every_page(server, paging):
    server.list_paging = paging
    refs = [server.add_submission(SLUG, public=i / 100).ref for i in range(45)]
    got = kc.list_submissions(SLUG)
    assert [s.ref for s in got] == refs[::-1]
    assert got[0].public_score == 0.44
    assert sum(c.method == "ListSubmissions" for c in server.calls) == 3


def test_leaderboard_pages_and_ranks(server, sub_file):
    server.competitions[SLUG].leaderboard = [(f"team {i:02d}", 0.9 - i / 100) for i in range(30)]
    kc.submit(SLUG, sub_file, "on the board")  # public 0.5 -> below every other team
    top = kc.leaderboard(SLUG, top=25)
    assert [e.rank for e in top] == list(range(1, 26))
    assert [e.team_name for e in top[:2]] == ["team 00", "team 01"]
    assert top[0].score == pytest.approx(0.9) and top[0].date.startswith("2024-03-01T12:00:00")
    assert sum(c.method == "GetLeaderboard" for c in server.calls) == 2

    mine = kc.team_entry(SLUG, "alice")
    assert (mine.rank, mine.score) == (31, 0.5)
    assert kc.team_entry(SLUG, "nobody") is None


def test_submission_limits(server, sub_file):
    assert kc.submission_limits(SLUG) == kc.SubmissionLimits(num_today=0, num_total=0, num_allowed_now=5)
    kc.submit(SLUG, sub_file, "one")
    kc.submit(SLUG, sub_file, "two")
    assert kc.submission_limits(SLUG) == kc.SubmissionLimits(num_today=2, num_total=2, num_allowed_now=3)


# ---- credentials ----


def test_access_token_from_env(server, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", server.token)
    assert kc.list_submissions(SLUG) == []
    assert server.calls[-1].auth == "token"


def test_kaggle_json_in_config_dir(server, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    config = Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json"
    config.write_text(json.dumps({"username": server.username, "key": server.key}))
    config.chmod(0o600)
    assert kc.submission_limits(SLUG).num_allowed_now == 5
    assert server.calls[-1].auth == "alice"


def test_no_credentials(server, monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    (Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json").write_text('{"username": "alice"}')  # no key
    _raises(
        r"^no Kaggle credentials: put kaggle.json \(from kaggle.com > Settings > API > Create New Token\) "
        r"in ~/.kaggle/ \(chmod 600\) or set KAGGLE_USERNAME and KAGGLE_KEY \(or KAGGLE_API_TOKEN\)$",
        kc.download_competition,
        SLUG,
        tmp_path,
    )
    assert server.calls == []


# ---- error paths ----


def test_bad_key_401(server, monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key-000")
    _raises(
        r"^Kaggle rejected the credentials from KAGGLE_USERNAME/KAGGLE_KEY \(401\): create a new token "
        r"\(kaggle.com > Settings > API > Create New Token\)",
        kc.list_submissions,
        SLUG,
    )


def test_bad_token_401(server, monkeypatch):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_revoked_token_99")
    _raises(r"^Kaggle rejected the credentials from KAGGLE_API_TOKEN \(401\)", kc.leaderboard, SLUG)


def test_rules_not_accepted_403(server, sub_file, tmp_path):
    server.competitions[SLUG].rules_accepted = False
    rules = rf"https://www\.kaggle\.com/competitions/{SLUG}/rules"
    _raises(
        rf"^Kaggle refused to download the data of '{SLUG}' \(403\): accept the competition rules at {rules} ",
        kc.download_competition,
        SLUG,
        tmp_path,
    )
    _raises(rf"^Kaggle refused to submit to '{SLUG}' \(403\): .* {rules} ", kc.submit, SLUG, sub_file, "m")
    assert server.submissions(SLUG) == []


def test_unknown_competition_404(server, tmp_path):
    _raises(
        r"^no competition 'emotion-detection-2099' on Kaggle \(404\): check the slug in comp\.yaml",
        kc.download_competition,
        "emotion-detection-2099",
        tmp_path,
    )


def test_rate_limited_429(server):
    server.rate_limited = True
    _raises(
        rf"^Kaggle rate limit reached \(429\) trying to list your submissions to '{SLUG}': retry later "
        r"\(Kaggle asks to wait 60 s\)$",
        kc.list_submissions,
        SLUG,
    )
    server.rate_limited = False
    server.fail_next("GetSubmissionLimits", 429)
    _raises(r"rate limit reached \(429\)", kc.submission_limits, SLUG)
    assert kc.submission_limits(SLUG) == kc.SubmissionLimits(
        num_today=0, num_total=0, num_allowed_now=5
    )  # only the next call failed


def test_other_server_error(server):
    server.fail_next("GetLeaderboard", 500, "Backend unavailable, try again")
    _raises(
        rf"^Kaggle answered 500 when asked to read the leaderboard of '{SLUG}': Backend unavailable, try "
        r"again; retry later$",
        kc.leaderboard,
        SLUG,
    )


def test_rejected_submission_ref_0(server, sub_file):
    server.reject_next_submission("Submission file has the wrong columns")
    _raises(
        rf"^Kaggle did not accept the submission to '{SLUG}': Submission file has the wrong columns; "
        "check the file",
        kc.submit,
        SLUG,
        sub_file,
        "m",
    )
    assert server.submissions(SLUG) == []


def test_failed_upload_ref_0(server, sub_file):
    server.fail_next_upload(500)
    _raises(r"^the upload of blend1\.csv to Kaggle failed: retry later", kc.submit, SLUG, sub_file, "m")
    assert [c.method for c in server.calls] == ["StartSubmissionUpload"]


def test_missing_submission_file(server, tmp_path):
    _raises(r"submission file .*nope\.csv does not exist", kc.submit, SLUG, tmp_path / "nope.csv", "m")
    assert server.calls == []


def test_server_stopped(server):
    server.stop()
    _raises(
        r"^could not reach Kaggle: cannot connect to the proxy \(Connection refused\); check your connection "
        r"or proxy",
        kc.list_submissions,
        SLUG,
    )


def test_closed_port(server, monkeypatch, tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name)
    import kagglesdk.kaggle_env as kaggle_env  # KAGGLE_API_ENVIRONMENT=LOCALHOST: the LOCAL endpoint

    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL, f"http://127.0.0.1:{port}")
    _raises(
        r"^could not reach Kaggle: Connection refused; check your connection or proxy",
        kc.download_competition,
        SLUG,
        tmp_path,
    )
    # token login calls Kaggle while authenticating: the same message
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_some_token_123")
    _raises(r"^could not reach Kaggle: Connection refused;", kc.leaderboard, SLUG)


def test_client_that_cannot_import(server, monkeypatch):
    for name in ("kaggle", "kaggle.api", "kaggle.api.kaggle_api_extended"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    _raises(r"^the kaggle client could not be loaded \(\w*Error: .*\): reinstall it", kc.leaderboard, SLUG)


def test_client_exits_or_fails_oddly(server, monkeypatch, tmp_path):
    from kaggle.api.kaggle_api_extended import KaggleApi

    with monkeypatch.context() as patch:
        patch.setattr(KaggleApi, "authenticate", lambda self: exit(1))  # what it does when no login works
        _raises(
            r"^Kaggle did not accept the credentials from KAGGLE_USERNAME/KAGGLE_KEY: create a new token",
            kc.list_submissions,
            SLUG,
        )
    monkeypatch.setattr(KaggleApi, "competition_download_files", _boom)
    _raises(
        rf"^the kaggle client failed to download the data of '{SLUG}': ValueError: Downloaded file size "
        r"\(3\) does not match expected size \(9\)$",
        kc.download_competition,
        SLUG,
        tmp_path / "data",
    )
    assert list((tmp_path / "data").iterdir()) == []  # the temporary download folder is gone


def _boom(*args, **kwargs):
    raise ValueError("Downloaded file size (3) does not match\nexpected size (9)")


def test_no_message_or_log_contains_a_secret(server, monkeypatch, sub_file, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    failures = []

    def check(fn, *args):
        with pytest.raises(KaggleError) as info:
            fn(*args)
        failures.append("".join(traceback.format_exception(info.value)))

    server.fail_next("*", 500, f"internal error for key {server.key}")  # secrets the user has
    check(kc.list_submissions, SLUG)
    server.reject_next_submission(f"bad file (auth {server.key})")
    check(kc.submit, SLUG, sub_file, "m")
    server.fail_next_upload(500)
    check(kc.submit, SLUG, sub_file, "m")
    monkeypatch.setenv("KAGGLE_API_TOKEN", server.token)
    server.fail_next("GetLeaderboard", 403, f"no access with {server.token}")
    check(kc.leaderboard, SLUG)
    server.stop()
    check(kc.download_competition, SLUG, tmp_path)

    assert "***" in failures[0] and "***" in failures[1]  # the server's words are quoted, redacted
    text = "\n".join(failures) + caplog.text + repr(find_credentials())
    assert server.key not in text and server.token not in text


# ---- import discipline and other processes ----


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_import_does_not_import_kaggle(tmp_path):
    code = (
        "import sys, comp.kaggle_client as kc\n"
        "assert 'kaggle' not in sys.modules and 'kagglesdk' not in sys.modules\n"
        "try:\n"
        "    kc.list_submissions('x')\n"
        "except kc.KaggleError as e:\n"
        "    print(e)\n"
        "assert 'kaggle' not in sys.modules, 'imported before checking credentials'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env.update(HOME=str(tmp_path), KAGGLE_CONFIG_DIR=str(tmp_path / "cfg"))
    done = _run(code, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no Kaggle credentials: ")


def test_subprocess_reaches_the_fake_server(server, sub_file):
    # a `comp` command run as a subprocess inherits the fixture's environment; with VERBOSE=1 the
    # client logs in at import through a verbose client that prints the Authorization header
    env = {**os.environ, "VERBOSE": "1", "KAGGLE_API_TOKEN": server.token}
    code = (
        "import logging, sys, comp.kaggle_client as kc\n"
        "logging.basicConfig(level=logging.DEBUG)\n"  # as a --debug flag would
        f"r = kc.submit({SLUG!r}, sys.argv[1], 'from a subprocess')\n"
        f"print(r.ref, kc.list_submissions({SLUG!r})[0].public_score)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(sub_file)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    (stored,) = server.submissions(SLUG)
    assert done.stdout.split() == [str(stored.ref), "0.5"]
    assert stored.description == "from a subprocess"
    assert "Authorization: Bearer ***" in done.stderr  # the client's print, redacted in the debug log
    assert server.token not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("raw", "expected"), [("0.71234", 0.71234), ("", None), (None, None), ("  ", None), ("n/a", None)]
)
def test_score_strings(raw, expected):
    assert kc._score(raw) == expected
