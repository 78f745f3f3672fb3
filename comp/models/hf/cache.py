"""Per-text caches: arrays that depend only on (backbone, settings, text), computed once.

Token ids and sentence vectors are cached per text under the workspace's ``.cache/``, so every fold
and every run reuses what an earlier one computed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from comp.atomic import atomic_path
from comp.digest import json_digest


def text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest().encode()


class TextCache:
    """1-D arrays (token ids, sentence vectors) cached per text in shard files under ``folder``.

    Each :meth:`get` writes one shard with the texts it had to compute, named by their hash, so
    concurrent runs never write the same file; readers skip shards that vanish while they look.
    Loaded shards are kept in memory for the life of the process.
    """

    MAX_SHARDS = 32  # beyond this, shards are merged into one on the next read
    _memo: dict[str, dict] = {}
    _lock = threading.Lock()

    @classmethod
    def forget(cls) -> None:
        """Drop the shards this process holds in memory: the next read starts from disk, as a new process would."""
        with cls._lock:
            cls._memo.clear()

    def __init__(self, folder: Path, writable: bool = True):
        self.folder = Path(folder)
        self.writable = writable

    def _entries(self) -> dict[bytes, np.ndarray]:
        key = str(self.folder.resolve())
        with self._lock:
            memo = self._memo.setdefault(key, {"shards": set(), "values": {}})
            shards = sorted(self.folder.glob("shard-*.npz")) if self.folder.is_dir() else []
            for shard in shards:
                if shard.name in memo["shards"]:
                    continue
                try:
                    with np.load(shard) as data:
                        keys, offsets, values = data["keys"], data["offsets"], data["values"]
                except (FileNotFoundError, OSError, KeyError, ValueError):
                    continue  # removed by a merge in another process, or half-copied by hand
                for i, k in enumerate(keys):
                    memo["values"][bytes(k)] = values[offsets[i] : offsets[i + 1]]
                memo["shards"].add(shard.name)
            if self.writable and len(shards) > self.MAX_SHARDS:
                self._merge(shards, memo)
            return memo["values"]

    def _merge(self, shards: list[Path], memo: dict) -> None:
        merged = self._write(list(memo["values"]), list(memo["values"].values()))
        memo["shards"].add(merged.name)
        for shard in shards:
            if shard != merged:
                shard.unlink(missing_ok=True)

    def _write(self, keys: list[bytes], arrays: list[np.ndarray]) -> Path:
        digest = hashlib.blake2b(b"".join(keys), digest_size=10).hexdigest()
        path = self.folder / f"shard-{digest}.npz"
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(a) for a in arrays])
        values = np.concatenate(arrays) if arrays else np.zeros(0)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array(keys, dtype="S32"), offsets=offsets, values=values)
        return path

    def get(
        self, texts: Sequence[str], compute: Callable[[list[str]], list[np.ndarray]]
    ) -> tuple[list[np.ndarray], int]:
        """Arrays for ``texts`` in order, computing the missing ones with ``compute``.

        Returns ``(arrays, n_computed)``; ``compute`` gets each missing text once.
        """
        keys = [text_key(t) for t in texts]
        values = self._entries()
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts, strict=True):
            if k not in values and k not in missing:
                missing[k] = t
        if missing:
            new = compute(list(missing.values()))
            fresh = dict(zip(missing, (np.asarray(a) for a in new), strict=True))
            if self.writable:
                self._write(list(fresh), list(fresh.values()))
            values.update(fresh)
        return [values[k] for k in keys], len(missing)


def cache_folder(cache_dir: Path, kind: str, writable: bool = True, **parts) -> Path:
    """``cache_dir/kind/<hash of parts>/`` with the parts written to ``key.json`` for humans (only when
    ``writable``: the non-zero ranks of a multi-GPU launch only read)."""
    text = json.dumps(parts, sort_keys=True, default=str)  # key.json; json_digest hashes this same text
    folder = Path(cache_dir) / kind / json_digest(parts)
    if writable and not (folder / "key.json").is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / "key.json") as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
        except OSError:
            pass  # a read-only cache still works: nothing is written
    return folder
