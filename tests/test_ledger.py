"""comp.ledger: the SQLite ledger, its failure modes, refreshing from Kaggle and the CV/LB correlation."""

import sqlite3

import pytest

from comp.errors import CompError
from comp.kaggle_client import KaggleSubmission
from comp.ledger import SCHEMA_VERSION, Ledger, LedgerEntry, correlation, refresh


def _entry(run="tfidf", sha="abc", ref=None, status="dry-run", tuned=0.6, honest=0.55, public=None, time=None):
    return LedgerEntry(
        id=None,
        time=time or "2024-03-01T12:00:00+00:00",
        run=run,
        file=f"submissions/x-{run}.csv",
        sha256=sha,
        message=f"{run}: CV",
        metric="f1_macro",
        cv_tuned=tuned,
        cv_honest=honest,
        ref=ref,
        status=status,
        public_score=public,
        private_score=None,
        note=None,
    )


def _kaggle(ref, status="complete", public=None, private=None, error=None):
    return KaggleSubmission(
        ref=ref,
        date="2024-03-01T12:00:00+00:00",
        description="",
        file_name="x.csv",
        status=status,
        public_score=public,
        private_score=private,
        error_description=error,
        team_name="alice",
    )


@pytest.fixture
def path(tmp_path):
    return tmp_path / "submissions" / "ledger.db"


def test_rows_persist_with_schema_version_and_rollback_journal(path):
    with Ledger(path) as ledger:
        first = ledger.add(_entry(sha="h1", ref=11, status="pending"))
        second = ledger.add(_entry(run="blend", sha="h2", time="2024-03-01T11:00:00+00:00"))
        assert (first.id, second.id) == (1, 2)
        updated = ledger.update(first.id, status="complete", public_score=0.61)
        assert updated.status == "complete" and updated.public_score == 0.61 and updated.run == "tfidf"
    with Ledger(path) as ledger:  # reopened: nothing lost, oldest first
        assert [e.run for e in ledger.entries()] == ["blend", "tfidf"]
        assert ledger.uploaded_with_hash("h1").id == 1
        assert ledger.uploaded_with_hash("h2") is None  # never uploaded
    con = sqlite3.connect(path)
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    con.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["ledger.db"]  # no -wal / -journal left


def test_update_many_is_all_or_nothing(path):
    with Ledger(path) as ledger:
        entry = ledger.add(_entry())
        with pytest.raises(ValueError, match="unknown ledger field"):
            ledger.update_many({entry.id: {"status": "pending"}, 99: {"bogus": 1}})
        assert ledger.get(entry.id).status == "dry-run"


def test_garbage_file_is_reported_not_overwritten(path):
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(
        CompError,
        match=r"ledger.db is not a readable ledger \(file is not a database\); restore it "
        r"from a backup, or move it aside",
    ):
        Ledger(path)
    assert path.read_bytes().startswith(b"this is not a database")


def test_damaged_pages_are_detected(path):
    Ledger(path).close()
    con = sqlite3.connect(path)  # one transaction: 300 commits would take seconds of fsync
    con.executemany(
        "INSERT INTO submissions (time, run, file, sha256, message, status) VALUES (?, ?, ?, ?, ?, ?)",
        [("2024", f"run{i}", "f.csv", f"h{i}" * 20, "m", "dry-run") for i in range(300)],
    )
    con.commit()
    con.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page : 3 * page] = b"\x07" * page  # wreck a whole page in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(CompError, match="is not a readable ledger .*restore it from a backup"):
        Ledger(path)


def test_locked_ledger_says_another_process_holds_it(path):
    with Ledger(path) as ledger:
        ledger.add(_entry())
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(CompError, match="ledger.db is locked: another comp process holds it; let it finish and retry"):
        Ledger(path, timeout=0.05)
    other.execute("ROLLBACK")
    # opened first, then locked while writing: the write fails cleanly and loses nothing
    with Ledger(path, timeout=0.05) as ledger:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(CompError, match="is locked"):
            ledger.add(_entry(run="second"))
        other.execute("ROLLBACK")
        ledger.add(_entry(run="third"))
        assert [e.run for e in ledger.entries()] == ["tfidf", "third"]
    other.close()


def test_newer_schema_is_refused(path):
    Ledger(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(CompError, match="written by a newer comp"):
        Ledger(path)


def test_refresh_updates_pending_and_complete_rows_only(path):
    with Ledger(path) as ledger:
        pending = ledger.add(_entry(run="a", ref=1, status="pending"))
        complete = ledger.add(_entry(run="b", ref=2, status="complete", public=0.5))
        errored = ledger.add(_entry(run="c", ref=3, status="error"))
        dry = ledger.add(_entry(run="d"))
        kaggle = [
            _kaggle(1, public=0.61, private=0.6),
            _kaggle(2, public=0.52),
            _kaggle(3, public=0.9),
            _kaggle(4, status="error", error="bad file"),
        ]
        updated, unknown = refresh(ledger, kaggle)
        assert updated == 2 and [s.ref for s in unknown] == [4]
        assert (
            ledger.get(pending.id).status,
            ledger.get(pending.id).public_score,
            ledger.get(pending.id).private_score,
        ) == ("complete", 0.61, 0.6)
        assert ledger.get(complete.id).public_score == 0.52
        assert ledger.get(errored.id).public_score is None  # an error is final
        assert ledger.get(dry.id).status == "dry-run"
        assert refresh(ledger, kaggle)[0] == 0  # nothing new


def test_correlation():
    honest = [0.50, 0.55, 0.61, 0.58, 0.70]
    tuned = [0.52, 0.60, 0.62, 0.66, 0.71]
    public = [0.48, 0.57, 0.60, 0.60, 0.69]
    entries = [_entry(tuned=t, honest=h, public=p) for t, h, p in zip(tuned, honest, public, strict=True)]
    c = correlation(entries + [_entry(public=None)])
    assert c.n == 5
    assert c.pearson_honest == pytest.approx(0.968899556376327, abs=1e-12)
    assert c.pearson_tuned == pytest.approx(0.975612477014189, abs=1e-12)
    # Spearman: the Pearson correlation of the ranks [1, 2, 4, 3, 5] and [1, 2, 3.5, 3.5, 5] (a tie in public)
    assert c.spearman_honest == pytest.approx(0.974679434480896, abs=1e-12)
    reversed_lb = correlation([_entry(tuned=h, honest=h, public=-p) for h, p in zip(honest, public, strict=True)])
    assert reversed_lb.pearson_honest == pytest.approx(-0.968899556376327, abs=1e-12)  # the sign is kept
    assert correlation(entries[:2]) is None
    flat = correlation([_entry(honest=0.5, public=p) for p in (0.4, 0.5, 0.6)])
    assert flat.pearson_honest is None and flat.spearman_honest is None
    assert flat.pearson_tuned is None  # every tuned CV is 0.6
