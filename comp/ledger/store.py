"""The submission ledger, ``submissions/ledger.db``: one SQLite row per submission.

Every write runs in its own transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a crash or a second
process never loses a row. The journal stays in rollback mode (no WAL): the ledger is one portable
file that can be copied with the workspace. File paths are stored relative to the workspace, so the
ledger keeps working after the workspace moves to another machine.

Statuses: ``dry-run`` (written, never meant for upload), ``uploading`` (the upload has started; a
crash leaves it so until :func:`reconcile` settles it from Kaggle's list), ``not uploaded`` (the
upload failed or had no credentials; ``note`` says why), then Kaggle's ``pending``, ``complete`` or
``error``.

Every CV is stored with its metric and direction (``metric``, ``higher_is_better``): `comp lb`
compares with the leaderboard, and correlates, only CVs measured with the competition's metric.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from comp.errors import CompError

SCHEMA_VERSION = 1
REFRESHED = ("pending", "complete")  # statuses Kaggle can still change
_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    time          TEXT NOT NULL,      -- ISO 8601, UTC
    run           TEXT NOT NULL,
    file          TEXT NOT NULL,      -- relative to the workspace
    sha256        TEXT NOT NULL,
    message       TEXT NOT NULL,
    metric        TEXT,
    cv_tuned      REAL,
    cv_honest     REAL,
    ref           INTEGER,            -- Kaggle's submission ref, once uploaded
    status        TEXT NOT NULL,
    public_score  REAL,
    private_score REAL,
    note          TEXT,               -- why it was not uploaded, or Kaggle's error description
    higher_is_better INTEGER          -- the CV metric's direction: 1 higher is better, 0 lower
);
CREATE INDEX IF NOT EXISTS submissions_sha256 ON submissions (sha256);
"""
# columns added after schema 1 was released: added in place to older ledgers (old comps ignore them)
_ADDED_COLUMNS = {"higher_is_better": "INTEGER"}


@dataclass
class LedgerEntry:
    id: int | None
    time: str
    run: str
    file: str
    sha256: str
    message: str
    metric: str | None
    cv_tuned: float | None
    cv_honest: float | None
    ref: int | None
    status: str
    public_score: float | None
    private_score: float | None
    note: str | None
    higher_is_better: bool | None = None

    def __post_init__(self) -> None:
        if self.higher_is_better is not None:  # SQLite stores it as 0/1
            self.higher_is_better = bool(self.higher_is_better)

    @property
    def cv(self) -> float | None:
        """The CV to compare with the leaderboard: the honest estimate, else the tuned one."""
        return self.cv_honest if self.cv_honest is not None else self.cv_tuned

    @property
    def lb_minus_cv(self) -> float | None:
        return None if self.public_score is None or self.cv is None else self.public_score - self.cv


_FIELDS = [f.name for f in dataclasses.fields(LedgerEntry)]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Ledger:
    """``with Ledger(path) as ledger: ...``; opening checks the file and creates the schema.

    ``readonly``: opened without any write lock, so it can be read (`comp lb --offline`) while another
    process writes; a missing ledger then reads as empty.
    """

    def __init__(self, path: str | Path, timeout: float = 10.0, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._con = None
        if readonly and not self.path.exists():
            return
        try:
            if readonly:
                self._con = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout, isolation_level=None
                )
            else:
                from comp.atomic import storage_errors

                with storage_errors(self.path.parent, "create the folder"):
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                self._con = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            self._open()
        except BaseException:
            self._con.close()
            raise

    def _open(self) -> None:
        with self._guard():
            if not self.readonly:
                self._con.execute("PRAGMA journal_mode=DELETE")
            check = [row[0] for row in self._con.execute("PRAGMA integrity_check").fetchall()]
            if check != ["ok"]:
                raise sqlite3.DatabaseError(check[0] if check else "integrity check failed")
        if self.readonly:
            with self._guard():
                tables = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if "submissions" not in tables:
                    raise sqlite3.DatabaseError("no submissions table")
                row = self._con.execute("SELECT MAX(version) FROM schema_version").fetchone()
                self._columns = {r[1] for r in self._con.execute("PRAGMA table_info(submissions)")}
            self._check_version(row[0])
            return
        with self._transaction() as con:
            for statement in filter(str.strip, _SCHEMA.split(";")):  # executescript would commit
                con.execute(statement)
            row = con.execute("SELECT MAX(version) FROM schema_version").fetchone()
            if row[0] is None:
                con.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            self._check_version(row[0])
            self._columns = {r[1] for r in con.execute("PRAGMA table_info(submissions)")}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in self._columns:
                    con.execute(f"ALTER TABLE submissions ADD COLUMN {name} {kind}")
                    self._columns.add(name)

    def _check_version(self, version) -> None:
        if version is not None and version > SCHEMA_VERSION:
            raise CompError(
                f"{self.path} was written by a newer comp (ledger schema {version}, this comp reads "
                f"{SCHEMA_VERSION}); upgrade comp"
            )

    def close(self) -> None:
        if self._con is not None:
            self._con.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- errors and transactions ---------------------------------------------------------------
    def _error(self, exc: sqlite3.Error) -> CompError:
        from comp.errors import StorageError

        text = str(exc)
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL or "disk is full" in text:
            return StorageError(
                f"cannot write {self.path}: the disk is full; free some space and retry (the ledger is unchanged)"
            )
        if code == sqlite3.SQLITE_READONLY or "readonly" in text:
            return StorageError(
                f"cannot write {self.path}: it or its folder is read-only; make submissions/ "
                "writable and retry (the ledger is unchanged)"
            )
        if code == sqlite3.SQLITE_CANTOPEN or "unable to open" in text:
            return StorageError(f"cannot open {self.path} ({text}); check that submissions/ exists and is writable")
        if code == sqlite3.SQLITE_IOERR or "disk I/O error" in text:
            return StorageError(
                f"cannot write {self.path}: disk I/O error ({text}); check the disk and retry (the ledger is unchanged)"
            )
        if "locked" in text or "busy" in text:
            return CompError(f"{self.path} is locked: another comp process holds it; let it finish and retry")
        return CompError(
            f"{self.path} is not a readable ledger ({text}); restore it from a backup, or move it aside "
            "to start a new one"
        )

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise CompError(f"{self.path} was opened read-only")
        with self._guard():
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
                self._con.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself after SQLITE_FULL and some I/O errors; a second ROLLBACK
                # would then fail and hide the error that matters
                if self._con.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._con.execute("ROLLBACK")
                raise

    # ---- rows ----------------------------------------------------------------------------------
    def add(self, entry: LedgerEntry) -> LedgerEntry:
        values = dataclasses.asdict(entry)
        values.pop("id")
        values = {k: v for k, v in values.items() if k in self._columns}
        with self._transaction() as con:
            cursor = con.execute(
                f"INSERT INTO submissions ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
                list(values.values()),
            )
            new_id = cursor.lastrowid
        return dataclasses.replace(entry, id=new_id)

    def update(self, entry_id: int, **fields: Any) -> LedgerEntry:
        self.update_many({entry_id: fields})
        return self.get(entry_id)

    def update_many(self, changes: dict[int, dict[str, Any]]) -> None:
        """Apply every change in one transaction: all rows are updated or none."""
        with self._transaction() as con:
            for entry_id, fields in changes.items():
                unknown = (set(fields) - set(_FIELDS)) | ({"id"} & set(fields))
                if unknown:
                    raise ValueError(f"unknown ledger field(s) {sorted(unknown)}")
                if fields:
                    assignments = ", ".join(f"{name} = ?" for name in fields)
                    con.execute(f"UPDATE submissions SET {assignments} WHERE id = ?", [*fields.values(), entry_id])

    def get(self, entry_id: int) -> LedgerEntry:
        rows = self._select("WHERE id = ?", (entry_id,))
        if not rows:
            raise CompError(f"no submission #{entry_id} in {self.path}")
        return rows[0]

    def entries(self) -> list[LedgerEntry]:
        """Every submission, oldest first."""
        return self._select("ORDER BY time, id")

    def entries_with_status(self, status: str) -> list[LedgerEntry]:
        return self._select("WHERE status = ? ORDER BY time, id", (status,))

    def uploaded_with_hash(self, sha256: str) -> LedgerEntry | None:
        """The first uploaded submission (one Kaggle gave a ref) with this file hash."""
        rows = self._select("WHERE sha256 = ? AND ref IS NOT NULL ORDER BY time, id LIMIT 1", (sha256,))
        return rows[0] if rows else None

    def _select(self, clause: str, params: tuple = ()) -> list[LedgerEntry]:
        if self._con is None:  # read-only and no ledger yet
            return []
        fields = [f if f in self._columns else f"NULL AS {f}" for f in _FIELDS]
        with self._guard():
            rows = self._con.execute(f"SELECT {', '.join(fields)} FROM submissions {clause}", params).fetchall()
        return [LedgerEntry(*row) for row in rows]
