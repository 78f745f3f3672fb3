"""Locks for a run shared by several processes: `--fold k` workers on machines that share the workspace.

The protocol, which `comp train` follows and any executor that fans folds out (local workers, Slurm
array jobs) can rely on:

```
runs/<run>/.lock/run.lock        the run lock: held briefly to check the config against run.yaml and
                                 write it, to claim a fold, and to assemble the run
runs/<run>/.lock/fold-<k>.lock   the fold lock: held for as long as fold k trains
runs/<run>/.lock/fold-<k>.json   who holds fold k (host, pid, started), written after the lock is taken
runs/<run>/fold-<k>/done.json    the fold's facts (seconds, rows, finished, host, config and data digests),
                                 written last, under the fold lock: its presence means the fold is complete
```

1. A worker takes the run lock, checks its config, fold file and data against run.yaml (or writes
   run.yaml for a new run), and releases it. A worker with another config is refused by name.
2. To train fold k, it takes the run lock, checks that run.yaml still has its config (a `--force`
   elsewhere may have replaced the run), skips k if done.json exists, and tries fold k's lock
   without waiting. Held elsewhere: it skips k and says by whom (or, with `wait`, waits for it and
   then finds it done). Free: it holds the fold lock, releases the run lock and trains.
3. It writes the fold's arrays, then done.json, and releases the fold lock. run.yaml is not touched
   per fold, so no process can lose another's fold facts.
4. Whoever finds every done.json present takes the run lock and assembles oof.parquet, test.parquet,
   scores.json and thresholds.json from all folds, whichever machine trained them.

For an executor (local workers, a Slurm array): start `comp train CONFIG --fold k` (or
``comp.train.train(ws, config, only_fold=k)``) for any fold, any number of times, on any machine that
mounts the workspace. A duplicate skips the fold and says who trains it; a worker that dies frees
its fold for the next one; the run is complete when `runs/<run>/oof.parquet` appears. `busy_folds`
tells which folds are being trained now, and by whom. run.yaml's ``digest`` ties every done.json to
the config, fold file and data of the run: a fold finished under another digest counts as not done.

**Seeds** (`seeds: N > 1`): each fold is N tasks (fold k, seed s). The task holds
`.lock/fold-<k>-seed-<s>.lock` (owner in `fold-<k>-seed-<s>.json`), writes only
`fold-<k>/seed-<s>/`, arrays first and its own `done.json` last. Whoever finds every seed of fold k
done takes the run lock and writes the fold's mean arrays and then `fold-<k>/done.json`, so step 4
and every reader see a fold exactly as with one seed. With one seed a task is the whole fold and
the layout is the one above.

**Executors** (`comp train --executor local|slurm`, :mod:`comp.executors`) add nothing to this
protocol: they start one `comp train ... --fold k [--seed-index s]` per missing task and let the
locks above decide. Any task may run twice, die, or be requeued; the run is assembled by the last
one to finish (or by the parent that launched them, if it finds every fold done).

**Studies** (`comp tune`, :mod:`comp.tune`): `runs/<study>/` holds study.yaml (the study's identity:
config, space, folds, metric), the Optuna storage and one run per trial, `runs/<study>/trial-<n>/`,
which follows the run protocol above.

```
runs/<study>/.lock/study.lock           held briefly: to check or write study.yaml, and around every
                                        ask (a new trial and its worker tag) and every stale-trial check
runs/<study>/.lock/worker-<id>.lock     held by a `comp tune` worker for as long as it lives
runs/<study>/study.journal.lock         the journal file's append lock (flock, see JournalLock)
```

A worker tags each trial it asks for with its id (user attribute ``comp_worker``) under the study
lock. A RUNNING trial whose worker's lock is free belongs to a dead worker: whoever asks next (or
`comp tune --show`) fails it, under the study lock, and queues its parameters again (Optuna's
``RetryHeartbeatStaleTrialCallback``); the retry trains in the same run folder, so its finished
folds are kept. This is a heartbeat that needs no clock: the kernel frees the lock the moment the
worker dies, on any storage.

The locks are `filelock.FileLock`s, i.e. `flock(2)` (which Linux maps to NFS byte-range locks on an
NFS mount), released by the kernel when the holder dies: kill -9 never leaves a stale lock behind. On a
file system without working locks (some FUSE mounts), use one worker per run.
The `.json` owner files are for messages only: they are read while the lock is held by someone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from comp.atomic import storage_error, storage_errors, write_json
from comp.errors import RunError

# the run lock is held for seconds at a time (a config check, a claim, an assembly)
RUN_LOCK_TIMEOUT = 600.0


@dataclass(frozen=True)
class Owner:
    """Who holds a lock, as its owner file says."""

    host: str
    pid: int
    started: str

    def describe(self) -> str:
        here = self.host == socket.gethostname()
        return f"pid {self.pid}{'' if here else f' on {self.host}'}, since {self.started}"


def lock_dir(run_dir: Path) -> Path:
    return Path(run_dir) / ".lock"


def run_lock_path(run_dir: Path) -> Path:
    return lock_dir(run_dir) / "run.lock"


def _task_name(fold: int, seed: int | None) -> str:
    return f"fold-{fold}" if seed is None else f"fold-{fold}-seed-{seed}"


def fold_lock_path(run_dir: Path, fold: int, seed: int | None = None) -> Path:
    """The lock of fold ``fold`` (``seed`` None) or of one seed's task of it."""
    return lock_dir(run_dir) / f"{_task_name(fold, seed)}.lock"


def fold_owner_path(run_dir: Path, fold: int, seed: int | None = None) -> Path:
    return lock_dir(run_dir) / f"{_task_name(fold, seed)}.json"


def _file_lock(path: Path):
    from filelock import FileLock

    with storage_errors(path, "create the lock"):
        path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def _acquire(lock, path: Path, timeout: float | None) -> bool:
    """Take ``lock``: at once (timeout 0), within ``timeout`` seconds, or waiting forever (None)."""
    from filelock import Timeout

    try:
        if timeout == 0:
            lock.acquire(blocking=False)
        else:
            lock.acquire(timeout=-1 if timeout is None else timeout)
    except Timeout:  # a TimeoutError, hence an OSError: caught first
        return False
    except OSError as exc:  # a read-only or full run folder
        raise storage_error(exc, path, "create the lock") from None
    return True


@contextlib.contextmanager
def run_lock(run_dir: Path, timeout: float = RUN_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the run lock of ``run_dir`` for the block (waits up to ``timeout`` seconds)."""
    path = run_lock_path(run_dir)
    lock = _file_lock(path)
    if not _acquire(lock, path, timeout):
        raise RunError(
            f"run '{Path(run_dir).name}' is locked by another comp process ({path}) for more than "
            f"{timeout:.0f} s; let it finish and retry"
        )
    try:
        yield
    finally:
        lock.release()


class FoldLock:
    """The lock of one fold (or of one seed's task of it, ``seed``), held while it trains;
    ``release()`` (or the process's death) frees it."""

    def __init__(self, run_dir: Path, fold: int, seed: int | None = None):
        self.run_dir, self.fold, self.seed = Path(run_dir), fold, seed
        self.path = fold_lock_path(run_dir, fold, seed)
        self._lock = _file_lock(self.path)

    def acquire(self, timeout: float | None = 0) -> bool:
        """True once held; False when another process holds it past ``timeout`` (0: do not wait)."""
        if not _acquire(self._lock, self.path, timeout):
            return False
        from comp.provenance import now

        write_json(
            fold_owner_path(self.run_dir, self.fold, self.seed),
            {"host": socket.gethostname(), "pid": os.getpid(), "started": now()},
        )
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def __enter__(self) -> FoldLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _is_held(path: Path) -> bool:
    """Whether some process holds the lock file ``path`` (probed by taking it without waiting)."""
    if not path.exists():
        return False
    lock = _file_lock(path)
    if _acquire(lock, path, 0):
        lock.release()
        return False
    return True


def fold_holder(run_dir: Path, fold: int, seed: int | None = None) -> Owner | None:
    """Who trains fold ``fold`` (or its seed ``seed``) now, or None when no process holds its lock.

    Probes by taking the lock without waiting, so never call it for a lock this process holds.
    """
    if not _is_held(fold_lock_path(run_dir, fold, seed)):
        return None
    return read_owner(run_dir, fold, seed) or Owner("?", 0, "?")


def read_owner(run_dir: Path, fold: int, seed: int | None = None) -> Owner | None:
    try:
        raw = json.loads(fold_owner_path(run_dir, fold, seed).read_text(encoding="utf-8"))
        return Owner(str(raw["host"]), int(raw["pid"]), str(raw["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _seed_locks(run_dir: Path, fold: int) -> list[int]:
    return sorted(
        int(p.stem.rsplit("-", 1)[1])
        for p in lock_dir(run_dir).glob(f"fold-{fold}-seed-*.lock")
        if p.stem.rsplit("-", 1)[1].isdigit()
    )


def busy_folds(run_dir: Path, folds: range | list[int], mine: set[int] | frozenset = frozenset()) -> dict[int, Owner]:
    """The folds among ``folds`` (except ``mine``) that another process is training, whole or one
    of its seeds, with who."""
    out = {}
    for k in folds:
        if k in mine:
            continue
        owner = fold_holder(run_dir, k)
        for s in _seed_locks(run_dir, k) if owner is None else ():
            owner = fold_holder(run_dir, k, s)
            if owner is not None:
                break
        if owner is not None:
            out[k] = owner
    return out


# ---- studies (comp tune) ------------------------------------------------------------------------


def study_lock(study_dir: Path, timeout: float = RUN_LOCK_TIMEOUT):
    """Hold the study lock of ``runs/<study>/`` for the block: study.yaml, asks, stale-trial checks."""
    return _held(lock_dir(study_dir) / "study.lock", f"study '{Path(study_dir).name}'", timeout)


@contextlib.contextmanager
def _held(path: Path, what: str, timeout: float) -> Iterator[None]:
    lock = _file_lock(path)
    if not _acquire(lock, path, timeout):
        raise RunError(
            f"{what} is locked by another comp process ({path}) for more than {timeout:.0f} s; let it finish and retry"
        )
    try:
        yield
    finally:
        lock.release()


def worker_lock_path(study_dir: Path, worker: str) -> Path:
    return lock_dir(study_dir) / f"worker-{worker}.lock"


class WorkerLock:
    """Held by a `comp tune` worker for its whole life: its trials are alive while it is held."""

    def __init__(self, study_dir: Path):
        self.id = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.path = worker_lock_path(study_dir, self.id)
        self._lock = _file_lock(self.path)
        _acquire(self._lock, self.path, None)

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()
        self.path.unlink(missing_ok=True)


def worker_alive(study_dir: Path, worker: str) -> bool:
    """Whether the `comp tune` worker ``worker`` still holds its lock (a dead one never does)."""
    return _is_held(worker_lock_path(study_dir, worker))


class JournalLock:
    """The append lock of an Optuna journal file, on flock (``JournalFileBackend(lock_obj=...)``).

    Optuna's own journal locks (a symlink or an O_EXCL file) outlive a worker killed while it
    appends and are broken by others only after a 30 s grace period (and are then broken even if
    their holder is merely slow); the kernel frees a flock the moment its holder dies.
    """

    def __init__(self, journal: Path):
        self.path = Path(f"{journal}.lock")
        self._lock = _file_lock(self.path)

    def acquire(self) -> bool:
        return _acquire(self._lock, self.path, None)

    def release(self) -> None:
        self._lock.release()


# ---- submissions ----------------------------------------------------------------------------------
# submissions/.lock/<file>.lock is held by `comp submit` from the ledger row's "uploading" until the
# row records Kaggle's answer; a row "uploading" whose lock is free was interrupted (comp.ledger.reconcile).


def upload_lock_path(submissions_dir: Path, file_name: str) -> Path:
    return Path(submissions_dir) / ".lock" / f"{file_name}.lock"


class UploadLock:
    def __init__(self, submissions_dir: Path, file_name: str):
        self.path = upload_lock_path(submissions_dir, file_name)
        self._lock = _file_lock(self.path)

    def acquire(self) -> None:
        _acquire(self._lock, self.path, None)

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release()


def upload_lock(submissions_dir: Path, file_name: str) -> UploadLock:
    return UploadLock(submissions_dir, file_name)


def upload_in_progress(submissions_dir: Path, file_name: str) -> bool:
    """Whether a `comp submit` process is uploading ``file_name`` right now."""
    path = upload_lock_path(submissions_dir, file_name)
    if not path.exists():
        return False
    lock = _file_lock(path)
    if _acquire(lock, path, 0):
        lock.release()
        return False
    return True
