"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash or a bad input never leaves a half-written file where a finished one is expected. The
temporary file is created with mode 0666 less the umask, as ``open()`` would create the file, so
run and submission files get the same permissions as the competition's data files (``mkstemp``
would make them 0600). A write that fails for lack of space or permission is one
:class:`~comp.errors.StorageError` line naming the file; the previous version stays in place.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from comp.errors import StorageError

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "the file is too large for this file system",
}


def storage_error(exc: OSError, path: str | Path, action: str = "write") -> StorageError:
    """One line for an OSError while writing ``path``: what failed, why, and what to do."""
    code = exc.errno
    if code is None:  # pyarrow and pandas raise OSError("[Errno 28] No space left on device ...")
        found = re.search(r"\[Errno (\d+)\]", str(exc))
        code = int(found.group(1)) if found else None
    if code is None and _no_space_left(Path(path)):  # numpy: "600 requested and 256 written"
        code = errno.ENOSPC
    reason = _REASONS.get(code) or (exc.strerror or str(exc).split(":")[0] or type(exc).__name__).lower()
    advice = (
        "free some space and retry"
        if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        else "make the folder writable (or work on a writable copy of the workspace) and retry"
    )
    return StorageError(f"cannot {action} {path}: {reason}; {advice} (nothing was half-written)")


def _no_space_left(path: Path) -> bool:
    folder = path if path.is_dir() else path.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 64 * 1024  # less than a few pages: what a short write means


@contextlib.contextmanager
def storage_errors(path: str | Path, action: str = "write") -> Iterator[None]:
    """Turn an OSError raised inside the block into a StorageError naming ``path``."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(exc, path, action) from None


def _create_temp(folder: Path, name: str) -> Path:
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            # 0o666: the kernel applies the umask, as for a file made by open()
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    tmp_path: Path | None = None
    try:
        with storage_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_path = _create_temp(path.parent, path.name)
        try:
            yield tmp_path
        except OSError as exc:  # the writer ran out of space or permission
            raise storage_error(exc, path) from None
        with storage_errors(path):
            os.replace(tmp_path, path)
    finally:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)


def append_text(path: str | Path, text: str) -> None:
    """Append to a log file; a full disk or a read-only folder is a StorageError naming it."""
    path = Path(path)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_yaml(path: str | Path, obj: Any) -> None:
    import yaml

    write_text(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def write_csv(path: str | Path, frame) -> None:
    """Write a DataFrame as UTF-8 CSV without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_parquet(path: str | Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_npy(path: str | Path, array) -> None:

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays appear in scores and thresholds
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
