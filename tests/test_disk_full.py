"""A full disk, during training and during a submission: one line that says "disk full" and names the
file, exit 1, nothing half-written, no submission file without its ledger row, a healthy ledger left
healthy. Then, with space again, the run resumes to the same bytes.

The real thing first: a small tmpfs mounted over runs/ or submissions/ in a private mount namespace
(``unshare -rm``, no root needed where user namespaces are enabled; skipped where they are not).
Then the same failures injected (a real SQLITE_FULL through ``max_page_count``, an ENOSPC from the
writer), which run everywhere.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from comp.errors import CompError, StorageError
from comp.ledger import Ledger
from comp.runs import load_run
from comp.train import train
from tests.helpers import make_workspace

UNSHARE = shutil.which("unshare")


def _can_mount_tmpfs(tmp_path) -> bool:
    if UNSHARE is None or not sys.platform.startswith("linux"):
        return False
    target = tmp_path / "probe"
    target.mkdir()
    probe = subprocess.run(
        [UNSHARE, "-rm", "sh", "-c", f"mount -t tmpfs -o size=16k tmpfs '{target}'"], capture_output=True, timeout=30
    )
    return probe.returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("cannot mount a tmpfs here (no unshare, or user namespaces are disabled)")


def _in_namespace(script: str, tmp_path) -> None:
    """Run a shell script in a private mount namespace (its mounts vanish with it)."""
    path = tmp_path / "script.sh"
    path.write_text("set -u\n" + textwrap.dedent(script))
    result = subprocess.run([UNSHARE, "-rm", "sh", str(path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_training_on_a_full_tmpfs_then_resuming_with_space(tmpfs, tmp_path):
    ws = make_workspace(tmp_path)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="reference")
    reference = load_run(ws, "reference").oof
    shutil.rmtree(ws.runs_dir)
    ws.runs_dir.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    comp = f"'{sys.executable}' -m comp --workspace '{ws.root}'"
    _in_namespace(
        f"""
        mount -t tmpfs -o size=16k tmpfs '{ws.runs_dir}'
        {comp} train '{ws.configs_dir / "tfidf.yaml"}' --folds 3 > '{out}/full.out' 2> '{out}/full.err'
        echo $? > '{out}/full.rc'
        find '{ws.runs_dir}' -name '*.tmp' > '{out}/tmp-files'
        mount -o remount,size=8m '{ws.runs_dir}'
        {comp} train '{ws.configs_dir / "tfidf.yaml"}' --folds 3 > '{out}/again.out' 2> '{out}/again.err'
        echo $? > '{out}/again.rc'
        cp -r '{ws.runs_dir}/tfidf' '{out}/run'
    """,
        tmp_path,
    )
    assert (out / "full.rc").read_text().strip() == "1"
    err = _one_line_error((out / "full.err").read_text().splitlines()[-1])
    assert err.startswith("error: cannot write ") and "runs/tfidf/" in err
    assert "the disk is full; free some space and retry (nothing was half-written)" in err
    assert (out / "tmp-files").read_text() == ""
    assert (out / "again.rc").read_text().strip() == "0", (out / "again.err").read_text()
    oof = pd.read_parquet(out / "run" / "oof.parquet")
    np.testing.assert_array_equal(oof[ws.load_settings().output_names].to_numpy(), reference)


@pytest.mark.parametrize("free_pages", [0, 1], ids=["csv-write-fails", "ledger-write-fails"])
def test_submitting_on_a_full_tmpfs(tmpfs, tmp_path, free_pages):
    ws = make_workspace(tmp_path)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    comp = [sys.executable, "-m", "comp", "--workspace", str(ws.root)]
    first = subprocess.run(
        [*comp, "submit", "tfidf", "--dry-run", "-m", "first"], capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    backup, out = tmp_path / "backup", tmp_path / "out"
    shutil.copytree(ws.submissions_dir, backup)
    out.mkdir()
    fill = (
        f"'{sys.executable}' -c \"import os; f = open('{ws.submissions_dir}/filler', 'wb')\n"
        "try:\n    while True: f.write(b'x' * 4096); f.flush()\nexcept OSError: pass\n"
        f'f.close(); os.truncate(f.name, max(0, os.path.getsize(f.name) - {free_pages} * 4096))"'
    )
    _in_namespace(
        f"""
        mount -t tmpfs -o size=64k tmpfs '{ws.submissions_dir}'
        cp -a '{backup}/.' '{ws.submissions_dir}/'
        {fill}
        '{sys.executable}' -m comp --workspace '{ws.root}' submit tfidf --dry-run -m second > '{out}/out' 2> '{out}/err'
        echo $? > '{out}/rc'
        rm '{ws.submissions_dir}/filler'
        cp -a '{ws.submissions_dir}/.' '{out}/after/'
    """,
        tmp_path,
    )
    assert (out / "rc").read_text().strip() == "1"
    err = _one_line_error((out / "err").read_text())
    assert "disk is full" in err and "not a readable ledger" not in err, err
    after = out / "after"
    assert sorted(p.name for p in after.glob("*.csv")) == sorted(p.name for p in backup.glob("*.csv"))  # no orphan
    assert not list(after.rglob("*.tmp"))
    with Ledger(after / "ledger.db") as ledger:  # healthy, and unchanged
        assert [e.message for e in ledger.entries()] == ["first"]


# ---- the same failures, injected -------------------------------------------------------------------


def _fill_ledger(path) -> Ledger:
    """A ledger whose file may not grow: SQLite answers SQLITE_FULL, as on a full disk."""
    ledger = Ledger(path)
    pages = ledger._con.execute("PRAGMA page_count").fetchone()[0]
    ledger._con.execute(f"PRAGMA max_page_count = {pages}")
    return ledger


def test_a_full_disk_during_a_ledger_write_says_disk_full_not_damaged(tmp_path):
    from tests.test_ledger import _entry

    path = tmp_path / "submissions" / "ledger.db"
    with Ledger(path) as ledger:
        ledger.add(_entry(run="kept"))
    ledger = _fill_ledger(path)
    with pytest.raises(
        StorageError,
        match=r"ledger.db: the disk is full; free some space and retry \(the ledger is "
        r"unchanged\)",
    ):
        for i in range(200):  # until the file would have to grow
            ledger.add(_entry(run=f"r{i}", sha="x" * 64 * 20))
    ledger.close()
    with Ledger(path) as ledger:
        runs = [e.run for e in ledger.entries()]
    assert runs[0] == "kept" and sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_submit_with_a_full_ledger_leaves_no_orphan_csv(tmp_path, monkeypatch, capsys):
    from comp import cli, console

    ws = make_workspace(tmp_path, train_rows=120, test_rows=40)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):  # the ledger's file cannot grow: a real SQLITE_FULL on the insert
        con = real_connect(*args, **kwargs)
        con.execute("PRAGMA max_page_count = 4")
        return con

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(sys, "argv", ["comp", "--workspace", str(ws.root), "submit", "tfidf", "--dry-run"])
    monkeypatch.setattr(console.err, "_width", 10_000)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "disk is full" in _one_line_error(err)
    assert not list(ws.submissions_dir.glob("*.csv")) and not list(ws.submissions_dir.rglob("*.tmp"))


def test_an_enospc_from_a_writer_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from comp.atomic import write_parquet

    target = tmp_path / "runs" / "x" / "oof.parquet"
    write_parquet(target, pd.DataFrame({"a": [1.0]}))
    before = target.read_bytes()

    def full(self, path, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(
        CompError,
        match=r"cannot write .*runs/x/oof.parquet: the disk is full; free some space and "
        r"retry \(nothing was half-written\)",
    ):
        write_parquet(target, pd.DataFrame({"a": [2.0]}))
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["oof.parquet"]


# ---- read-only folders (a bind mount made read-only: root cannot write there either) ---------------


@pytest.mark.parametrize(
    ("folder", "command", "message"),
    [
        (
            "runs",
            ["train", "{configs}/tfidf.yaml", "--folds", "3", "--name", "other"],
            r"^error: cannot create the lock .*runs/other/.lock/run.lock: the file system is read-only; make the "
            r"folder "
            r"writable \(or work on a writable copy of the workspace\) and retry",
        ),
        (
            "submissions",
            ["submit", "tfidf", "--dry-run"],
            r"^error: cannot write .*submissions/.*: the file system is read-only; make the folder writable",
        ),
    ],
    ids=["runs", "submissions"],
)
def test_a_read_only_folder_is_one_line(tmpfs, tmp_path, folder, command, message):
    import re

    ws = make_workspace(tmp_path, train_rows=120, test_rows=40)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    if folder == "submissions":  # a ledger exists already: opening it for writing is what fails
        Ledger(ws.ledger_path).close()
    out = tmp_path / "out"
    out.mkdir()
    args = " ".join(f"'{a.format(configs=ws.configs_dir)}'" for a in command)
    target = ws.root / folder
    _in_namespace(
        f"""
        mount --bind '{target}' '{target}' && mount -o remount,ro,bind '{target}'
        '{sys.executable}' -m comp --workspace '{ws.root}' {args} > '{out}/out' 2> '{out}/err'
        echo $? > '{out}/rc'
    """,
        tmp_path,
    )
    assert (out / "rc").read_text().strip() == "1"
    err = _one_line_error((out / "err").read_text().strip().splitlines()[-1])
    assert re.search(message, err), err
