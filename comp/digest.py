"""SHA-256 digests: of bytes, of a file, of a JSON-able identity. The one home of comp's hashing for
records (run digests, fold files, uploaded submissions, fetched files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (files comp hashes are CSVs and submissions: they fit in memory)."""
    return sha256_bytes(Path(path).read_bytes())


def json_digest(identity: Any, length: int = 16) -> str:
    """A short, stable digest of a JSON-able value: keys sorted, anything else by ``str``."""
    return sha256_bytes(json.dumps(identity, sort_keys=True, default=str).encode())[:length]
