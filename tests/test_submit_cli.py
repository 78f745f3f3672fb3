"""`comp submit`, `comp lb` and `comp evaluate` end to end: the real kaggle client against the fake
Kaggle server, which scores every upload with the competition's metric against a hidden answer key
(public LB = the key's first half, private = the second half)."""

import re
import shutil
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from comp import cli, console
from comp.data import load_competition, read_csv
from comp.evaluate import score_frames
from comp.evaluation import evaluate_oof
from comp.fingerprint import data_fingerprint
from comp.record import CompetitionRecord, FoldsRecord, RunRecord
from comp.runs import write_run_outputs, write_run_yaml
from comp.submission import parse_submission
from tests.helpers import make_workspace

SLUG = "test-comp"


def metric_scorer(settings):
    """The fake server's scorer: the competition metric on each half of the hidden key."""

    def scorer(submission: bytes, answer: bytes):
        sub, key = parse_submission(submission.decode()), parse_submission(answer.decode())
        half = len(key) // 2
        out = []
        for part in (key.iloc[:half], key.iloc[half:]):
            rows = sub[sub[settings.id_column].isin(set(part[settings.id_column]))]
            out.append(score_frames(rows, part.reset_index(drop=True), settings).score)
        return tuple(out)

    return scorer


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path)


@pytest.fixture
def answers(tmp_path):
    return tmp_path / "download" / "test_labels.csv"


@pytest.fixture
def server(fake_kaggle, ws, answers):
    fake_kaggle.add_competition(
        SLUG,
        answer=answers.read_bytes(),
        scorer=metric_scorer(ws.load_settings()),
        leaderboard=[("top team", 0.99), ("middle", 0.5), ("last", 0.01)],
    )
    return fake_kaggle


def make_run(ws, answers, name="tfidf", noise=0.6, seed=0, test=None):
    """Run files written directly (no training): probabilities = true labels blurred by ``noise``."""
    rng = np.random.default_rng(seed)
    comp = load_competition(ws)
    settings = comp.settings
    key = read_csv(answers).set_index(settings.id_column).loc[comp.test_ids]
    Y_test = key[settings.label_columns].to_numpy(dtype=float)
    oof = np.clip(comp.Y * (1 - noise) + rng.random(comp.Y.shape) * noise * 1.6, 0, 1)
    if test is None:
        test = np.clip(Y_test * (1 - noise) + rng.random(Y_test.shape) * noise * 1.6, 0, 1)
    folds = np.arange(len(comp.Y)) % 3
    scores = evaluate_oof(oof, comp.Y, folds, settings.task, settings.metric, settings.min_labels)
    paths = ws.run(name)
    write_run_yaml(
        paths,
        RunRecord(
            name=name,
            kind="model",
            model="fake",
            created="2024-03-01T12:00:00",
            folds=FoldsRecord("folds.csv", "none", 3, 42),
            competition=CompetitionRecord(settings.competition, settings.task, settings.metric, settings.output_names),
            data=data_fingerprint(comp, "2024-03-01T12:00:00"),
        ),
    )
    write_run_outputs(
        paths,
        settings.id_column,
        settings.output_names,
        comp.train_ids,
        folds,
        oof,
        comp.test_ids,
        test,
        scores.scores_json(),
        scores.thresholds_json(settings.output_names, settings.task, 0),
    )
    return scores


def comp(monkeypatch, capsys, *args):
    """Run the `comp` entry point in-process; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["comp", *map(str, args)])
    monkeypatch.setattr(console.out, "_width", 200)  # a wide terminal: table cells stay on one line
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def run(monkeypatch, capsys, ws):
    return lambda *args: comp(monkeypatch, capsys, "--workspace", ws.root, *args)


def _ledger(ws):
    if not ws.ledger_path.exists():
        return []
    con = sqlite3.connect(ws.ledger_path)
    rows = con.execute("SELECT run, file, status, ref, public_score, private_score, note FROM submissions ORDER BY id")
    out = [dict(zip(("run", "file", "status", "ref", "public", "private", "note"), r, strict=True)) for r in rows]
    con.close()
    return out


# ---- the happy path ----------------------------------------------------------------------------


def test_submit_then_lb_wait_and_top(server, ws, answers, run):
    server.competitions[SLUG].polls_until_complete = 2
    scores = make_run(ws, answers)
    code, out, err = run("submit", "tfidf")
    assert code == 0, err
    [row] = _ledger(ws)
    assert row["status"] == "pending" and row["file"].startswith("submissions/") and row["file"].endswith("-tfidf.csv")
    [uploaded] = server.submissions(SLUG)
    assert uploaded.content == (ws.root / row["file"]).read_bytes() and uploaded.ref == row["ref"]
    assert uploaded.description == f"tfidf: CV f1_macro tuned {scores.tuned:.4f}, honest {scores.honest:.4f}"
    assert f"uploaded: ref {row['ref']}" in out and "4 submission(s) left today" in out

    code, out, err = run("lb", "--wait", "--interval", "0")
    assert code == 0, err
    [row] = _ledger(ws)
    # the server scored the file with the competition metric; comp evaluate agrees on the whole key
    sub, key = read_csv(ws.root / row["file"]), read_csv(answers)
    public, private = metric_scorer(ws.load_settings())(sub.to_csv(index=False).encode(), answers.read_bytes())
    assert row["status"] == "complete"
    assert row["public"] == pytest.approx(public, abs=1e-5) and row["private"] == pytest.approx(private, abs=1e-5)
    # Kaggle shows 5 decimals, and so does comp lb
    assert f"{public:.5f}" in out and f"{row['public'] - scores.honest:+.5f}" in out
    assert 0.3 < score_frames(sub, key, ws.load_settings()).score < 0.95

    code, out, err = run("lb", "--top", "2")
    assert code == 0, err
    assert "top team" in out and "middle" in out and "last" not in out
    rank = 1 + sum(other > round(public, 5) for other in (0.99, 0.5, 0.01))
    assert f"your best: rank {rank}, {public:.5f} (alice)" in out


def test_correlation_once_three_submissions_are_scored(server, ws, answers, run):
    for i, noise in enumerate((0.4, 0.7, 0.9)):
        make_run(ws, answers, f"m{i}", noise=noise, seed=i)
        assert run("submit", f"m{i}")[0] == 0
        if i == 1:
            assert "Pearson" not in run("lb")[1]
    code, out, err = run("lb")
    assert code == 0 and "CV (f1_macro) vs public LB over 3 submissions: Pearson r" in out
    assert [r["status"] for r in _ledger(ws)] == ["complete"] * 3


def test_identical_file_is_not_uploaded_twice_unless_forced(server, ws, answers, run):
    make_run(ws, answers)
    assert run("submit", "tfidf", "-m", "first")[0] == 0
    code, out, err = run("submit", "tfidf")
    assert code == 1 and "identical to #1" in err and "Pass --force to upload it again" in err
    assert len(server.submissions(SLUG)) == 1 and len(_ledger(ws)) == 1
    assert len(list(ws.submissions_dir.glob("*.csv"))) == 1  # nothing written either
    code, out, err = run("submit", "tfidf", "--dry-run")
    assert code == 0 and "identical to #1" in err and "dry run: not uploaded" in out
    code, out, err = run("submit", "tfidf", "--force", "-m", "again")
    assert code == 0, err
    assert [s.description for s in server.submissions(SLUG)] == ["first", "again"]
    assert [r["status"] for r in _ledger(ws)] == ["pending", "dry-run", "pending"]
    assert len({r["file"] for r in _ledger(ws)}) == 3  # same second: distinct names


def test_dry_run_needs_no_kaggle(ws, answers, run, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    make_run(ws, answers)
    code, out, err = run("submit", "tfidf", "--dry-run")
    assert code == 0, err
    [row] = _ledger(ws)
    assert row["status"] == "dry-run" and row["ref"] is None and (ws.root / row["file"]).is_file()


# ---- failures ----------------------------------------------------------------------------------


def test_no_credentials_still_writes_and_logs(server, ws, answers, run, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    make_run(ws, answers)
    code, out, err = run("submit", "tfidf")
    assert code == 1 and err.startswith("error: no Kaggle credentials")
    assert "was written and logged as ledger #1, not uploaded" in err and len(err.strip().splitlines()) == 1
    [row] = _ledger(ws)
    assert row["status"] == "not uploaded" and "no Kaggle credentials" in row["note"]
    assert (ws.root / row["file"]).is_file() and server.submissions(SLUG) == []
    # lb without credentials warns and still shows the ledger
    code, out, err = run("lb")
    assert code == 0 and "no Kaggle credentials" in err and "not uploaded" in out


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda s, mp: mp.setenv("KAGGLE_KEY", "wrong-key"), r"rejected the credentials .* \(401\)"),
        (
            lambda s, mp: setattr(s.competitions[SLUG], "rules_accepted", False),
            r"\(403\): accept the competition rules",
        ),
        (lambda s, mp: s.fail_next("StartSubmissionUpload", 429), r"rate limit reached \(429\).*wait 60 s"),
        (lambda s, mp: s.fail_next_upload(500), "the upload of .* failed: retry later"),
        (lambda s, mp: s.reject_next_submission("Daily limit reached"), "did not accept the submission .*Daily limit"),
    ],
    ids=["401", "403-rules", "429", "upload-failed", "ref-0"],
)
def test_kaggle_failures_leave_a_logged_file(server, ws, answers, run, monkeypatch, setup, message):
    make_run(ws, answers)
    setup(server, monkeypatch)
    code, out, err = run("submit", "tfidf")
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    assert "logged as ledger #1, not uploaded" in err
    [row] = _ledger(ws)
    assert row["status"] == "not uploaded" and row["ref"] is None and re.search(message, row["note"])
    assert server.submissions(SLUG) == []


def test_unknown_run(ws, run):
    code, out, err = run("submit", "nope")
    assert code == 1 and "error: no run 'nope'" in err and "comp runs" in err


def test_invalid_probabilities_are_never_written_or_uploaded(server, ws, answers, run):
    settings = ws.load_settings()
    settings.submission_format = "probabilities"
    settings.metric = "roc_auc_macro"
    ws.save_settings(settings)
    comp = load_competition(ws)
    test = np.full((len(comp.test_ids), len(settings.output_names)), 0.5)
    test[3, 2] = 1.5  # a probability out of range
    make_run(ws, answers, test=test)
    code, out, err = run("submit", "tfidf", "--force")  # --force: the sample holds 0/1 labels
    assert code == 1
    assert (
        f"test.parquet has probabilities outside [0, 1] in column 'anger' (1 row(s): 1.5; ids {comp.test_ids[3]})"
        in err
    )
    assert not list(ws.submissions_dir.glob("*.csv")) and server.calls == [] and not ws.ledger_path.exists()


def test_corrupt_ledger(server, ws, answers, run):
    make_run(ws, answers)
    ws.ledger_path.write_bytes(b"garbage" * 100)
    code, out, err = run("submit", "tfidf")
    assert code == 1 and "ledger.db is not a readable ledger" in err and "restore it from a backup" in err
    assert server.submissions(SLUG) == [] and ws.ledger_path.read_bytes() == b"garbage" * 100
    assert run("lb", "--offline")[0] == 1


def test_lb_wait_times_out_and_rate_limit_is_a_warning(server, ws, answers, run):
    server.competitions[SLUG].polls_until_complete = 1000
    make_run(ws, answers)
    assert run("submit", "tfidf")[0] == 0
    code, out, err = run("lb", "--wait", "--timeout", "0", "--interval", "0")
    assert code == 0 and "#1 is still pending after 0 s" in err and "pending" in out
    server.rate_limited = True
    code, out, err = run("lb")
    assert code == 0 and "rate limit reached (429)" in err and "showing the ledger as recorded" in err
    assert run("lb", "--wait")[0] == 1  # waiting cannot do without Kaggle


def test_lb_offline_after_the_workspace_moves(server, ws, answers, run, monkeypatch, capsys, tmp_path):
    make_run(ws, answers)
    assert run("submit", "tfidf")[0] == 0
    assert run("lb")[0] == 0
    moved = tmp_path / "elsewhere" / "ws"
    shutil.copytree(ws.root, moved)
    shutil.rmtree(ws.root)
    server.stop()  # no Kaggle either
    code, out, err = comp(monkeypatch, capsys, "--workspace", moved, "lb", "--offline")
    assert code == 0, err
    [row] = _ledger(type(ws)(moved))
    assert row["status"] == "complete" and (moved / row["file"]).is_file()
    assert f"{row['public']:.5f}" in out
    code, out, err = comp(monkeypatch, capsys, "--workspace", moved, "lb", "--offline", "--top", "3")
    assert code == 1 and "--wait and --top need Kaggle; drop --offline" in err


# ---- comp evaluate -----------------------------------------------------------------------------


def test_evaluate_in_and_outside_a_workspace(ws, answers, run, monkeypatch, capsys, tmp_path):
    make_run(ws, answers)
    assert run("submit", "tfidf", "--dry-run")[0] == 0
    [row] = _ledger(ws)
    file = ws.root / row["file"]
    expected = score_frames(read_csv(file), read_csv(answers), ws.load_settings())
    code, out, err = run("evaluate", file, "--answers", answers)
    assert code == 0, err
    assert f"f1_macro = {expected.score:.5f} over 100 rows" in out and "precision" in out and "sadness" in out
    code, out, err = run("evaluate", file, "--answers", answers, "--metric", "jaccard_samples")
    assert code == 0 and "jaccard_samples = " in out
    # outside any workspace the schema comes from the key
    monkeypatch.chdir(tmp_path)
    code, out, err = comp(monkeypatch, capsys, "evaluate", file, "--answers", answers)
    assert code == 0 and f"f1_macro = {expected.score:.5f}" in out
    # a file with a row missing
    short = tmp_path / "short.csv"
    pd.read_csv(file, dtype=str).iloc[1:].to_csv(short, index=False)
    code, out, err = run("evaluate", short, "--answers", answers)
    assert code == 1 and "short.csv is invalid: 99 rows, test_labels.csv has 100" in err


def test_the_installed_entry_point_submits(server, ws, answers):
    """One real subprocess: `python -m comp` finds the fake server through the inherited environment."""
    make_run(ws, answers)
    result = subprocess.run(
        [sys.executable, "-m", "comp", "--workspace", str(ws.root), "submit", "tfidf", "-m", "sub"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert [s.description for s in server.submissions(SLUG)] == ["sub"]


def test_lb_shows_why_kaggle_could_not_score(server, ws, answers, run):
    server.competitions[SLUG].polls_until_complete = 5
    make_run(ws, answers)
    assert run("submit", "tfidf")[0] == 0
    [row] = _ledger(ws)
    server.complete(row["ref"], error="Evaluation failed: bad column")
    code, out, err = run("lb")
    assert code == 0 and "#1 was not scored by Kaggle: Evaluation failed: bad column" in out
    assert _ledger(ws)[0]["status"] == "error"


# ---- the daily allowance, interrupted uploads, transient errors, redaction ----------------------


def test_no_submission_left_today_uploads_nothing_and_says_when_it_resets(server, ws, answers, run):
    server.competitions[SLUG].daily_limit = 1
    make_run(ws, answers)
    assert run("submit", "tfidf", "-m", "one")[0] == 0
    make_run(ws, answers, name="other", seed=5)
    calls = len(server.calls)
    code, out, err = run("submit", "other")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert re.search(
        r"no submissions left today for 'test-comp' \(1 made today\); Kaggle resets the allowance at "
        r"00:00 UTC, in \d+ h \d\d min. Nothing was written or uploaded",
        err,
    ), err
    assert [c.method for c in server.calls[calls:]] == ["GetSubmissionLimits"]  # asked first, uploaded nothing
    assert len(server.submissions(SLUG)) == 1 and len(_ledger(ws)) == 1
    assert len(list(ws.submissions_dir.glob("*.csv"))) == 1


def test_limits_are_asked_before_the_upload_and_left_today_is_never_negative(server, ws, answers, run):
    server.limits_sequence = [
        {"numToday": 4, "numTotal": 9, "numAllowedNow": 1},
        {"numToday": 5, "numTotal": 10, "numAllowedNow": -1},
    ]
    make_run(ws, answers)
    code, out, err = run("submit", "tfidf")
    assert code == 0, err
    methods = [c.method for c in server.calls]
    assert methods.index("GetSubmissionLimits") < methods.index("StartSubmissionUpload")
    # the count is never negative (the file name's timestamp may hold "-1": 20261202-134211-tfidf.csv)
    assert "0 submission(s) left today" in out and "-1 submission" not in out


def test_a_team_not_formed_yet_may_submit_and_a_spent_total_allowance_may_not(server, ws, answers, run):
    server.limits_sequence = [{"numToday": 0, "numTotal": 0, "numAllowedNow": 0}]  # Kaggle: no team yet
    make_run(ws, answers)
    assert run("submit", "tfidf")[0] == 0
    server.competitions[SLUG].total_limit = 1
    make_run(ws, answers, name="other", seed=5)
    code, out, err = run("submit", "other")
    assert code == 1 and "the competition's total allowance is used (1 made); nothing was written or uploaded" in err


def test_kill_9_while_kaggle_accepts_the_upload_is_reconciled_and_not_uploaded_twice(server, ws, answers, run):
    import signal
    import time

    make_run(ws, answers)
    server.hang_next("CreateSubmission")  # Kaggle records the submission; comp never hears back
    submit = subprocess.Popen(
        [sys.executable, "-m", "comp", "--workspace", str(ws.root), "submit", "tfidf", "-m", "sub"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not server.submissions(SLUG):
        assert submit.poll() is None and time.monotonic() < deadline, submit.stderr.read()
        time.sleep(0.02)
    submit.send_signal(signal.SIGKILL)
    submit.wait(timeout=60)
    server.release()
    [row] = _ledger(ws)
    assert row["status"] == "uploading" and row["ref"] is None  # what the crash left
    [accepted] = server.submissions(SLUG)
    code, out, err = run("submit", "tfidf", "-m", "sub")  # a retry: reconciled first, so refused as identical
    assert code == 1 and "identical to #1" in err, err
    assert len(server.submissions(SLUG)) == 1
    [row] = _ledger(ws)
    assert row["ref"] == accepted.ref and row["status"] == "complete"
    assert "the upload was interrupted after Kaggle received it" in row["note"]


def test_an_upload_killed_before_kaggle_got_the_file_becomes_not_uploaded(server, ws, answers, run):
    import signal
    import time

    make_run(ws, answers)
    server.hang_next("StartSubmissionUpload")
    submit = subprocess.Popen(
        [sys.executable, "-m", "comp", "--workspace", str(ws.root), "submit", "tfidf"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while "StartSubmissionUpload" not in [c.method for c in server.calls]:
        assert submit.poll() is None and time.monotonic() < deadline, submit.stderr.read()
        time.sleep(0.02)
    submit.send_signal(signal.SIGKILL)
    submit.wait(timeout=60)
    server.release()
    assert _ledger(ws)[0]["status"] == "uploading"
    code, out, err = run("lb")
    assert code == 0, err
    assert "settled 1 interrupted upload(s)" in out
    [row] = _ledger(ws)
    assert row["status"] == "not uploaded" and "interrupted before Kaggle received the file" in row["note"]
    assert run("submit", "tfidf")[0] == 0 and len(server.submissions(SLUG)) == 1


def test_lb_wait_retries_a_transient_5xx(server, ws, answers, run):
    make_run(ws, answers)
    assert run("submit", "tfidf")[0] == 0
    server.fail_next("ListSubmissions", 503, times=2)
    code, out, err = run("lb", "--wait", "--interval", "0")
    assert code == 0, err
    assert err.count("Kaggle answered 503") == 2 and "retrying in" in err
    assert _ledger(ws)[0]["status"] == "complete"
    server.fail_next("ListSubmissions", 503, times=1000)
    code, out, err = run("lb", "--wait", "--interval", "0", "--timeout", "1")
    assert code == 1 and "Kaggle answered 503" in err  # within --timeout only


def test_a_server_message_quoting_basic_auth_is_redacted(server, ws, answers, run):
    import base64

    token = base64.b64encode(f"{server.username}:{server.key}".encode()).decode()
    server.fail_next("CreateSubmission", 500, message=f"proxy said: Authorization: Basic {token} refused")
    make_run(ws, answers)
    code, out, err = run("submit", "tfidf")
    assert code == 1 and "Kaggle answered 500" in err
    [row] = _ledger(ws)
    for text in (err, row["note"]):
        assert token not in text and token.rstrip("=") not in text and server.key not in text
        assert "Authorization: Basic ***" in text


def test_lb_offline_reads_while_another_process_writes(server, ws, answers, run):
    make_run(ws, answers)
    assert run("submit", "tfidf", "--dry-run")[0] == 0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()",
            str(ws.ledger_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, out, err = run("lb", "--offline")
        assert code == 0, err
        assert "dry-run" in out
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_every_cv_carries_its_metric_and_only_like_metrics_are_compared(server, ws, answers, run):
    import json

    for i, noise in enumerate((0.4, 0.7, 0.9, 0.5)):
        make_run(ws, answers, f"m{i}", noise=noise, seed=i)
    scores = ws.run("m3").scores
    scores.write_text(json.dumps({**json.loads(scores.read_text()), "metric": "log_loss", "greater_is_better": False}))
    for i in range(4):
        assert run("submit", f"m{i}")[0] == 0
    code, out, err = run("lb")
    assert code == 0, err
    con = sqlite3.connect(ws.ledger_path)
    rows = con.execute("SELECT run, metric, higher_is_better FROM submissions ORDER BY id").fetchall()
    con.close()
    assert rows == [("m0", "f1_macro", 1), ("m1", "f1_macro", 1), ("m2", "f1_macro", 1), ("m3", "log_loss", 0)]
    line = next(line for line in out.splitlines() if " m3 " in line)
    assert "log_loss ↓" in line and " - " in line  # no LB - CV across metrics
    assert "f1_macro ↑" in out
    assert "CV in log_loss is not the leaderboard's metric (f1_macro): no LB-CV, and left out of the correlation" in out
    assert "CV (f1_macro) vs public LB over 3 submissions" in out
