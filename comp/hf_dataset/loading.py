"""Loading a Hugging Face dataset: a local folder, a saved DatasetDict, the hub, else the local cache offline.

Every usual failure of ``datasets.load_dataset`` becomes one DataError line that says what to do.
"""

from __future__ import annotations

import ast
import contextlib
import re
from pathlib import Path
from typing import Any

from comp.errors import DataError, first_line
from comp.models.hf import hub


def load_dataset_dict(name: str, config: str | None, spec: str) -> tuple[Any, str]:
    """Return (DatasetDict, source). A local folder first, then the hub, then the cache offline."""
    import datasets

    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            if config:
                raise DataError(f"{name} was saved with save_to_disk and has no configs; drop ':{config}'")
            return datasets.load_from_disk(str(path)), "saved DatasetDict"
        if (path / "state.json").is_file():
            raise DataError(
                f"{name} holds a single Dataset saved with save_to_disk; save a DatasetDict with "
                "'train' and 'test' splits instead"
            )
        return _as_dict(_call_load(datasets, name, config, spec, offline=False), spec), "local folder"

    offline = bool(datasets.config.HF_HUB_OFFLINE)
    if not offline and not hub.hub_reachable(datasets.config.HF_ENDPOINT):
        offline = True
    if not offline:
        try:
            return _as_dict(_call_load(datasets, name, config, spec, offline=False), spec), "hub"
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
    with _offline_mode(datasets):
        return _as_dict(_call_load(datasets, name, config, spec, offline=True), spec), "local cache (offline)"


def _call_load(datasets, name: str, config: str | None, spec: str, *, offline: bool):
    """``datasets.load_dataset`` with its usual failures turned into one-line DataErrors."""
    try:
        return datasets.load_dataset(name, config)
    except ValueError as exc:
        raise _config_error(str(exc), name, config, spec, offline) from None
    except Exception as exc:
        if offline and _is_connection_error(exc):
            raise DataError(_not_cached(name, config)) from None
        if isinstance(exc, datasets.exceptions.DatasetNotFoundError):
            raise DataError(
                f"Hugging Face dataset {spec} was not found on the hub (or it is gated or private): "
                "check the name, or point --hf at a local folder"
            ) from None
        if isinstance(exc, (datasets.exceptions.DatasetsError, FileNotFoundError)):
            raise DataError(f"cannot read Hugging Face dataset {spec}: {first_line(exc)}") from None
        raise


def _config_error(message: str, name: str, config: str | None, spec: str, offline: bool) -> Exception:
    available = _listed(message, r"Available(?: configs in the cache)?: (\[.*?\])") or _listed(
        message, r"available configs: (\[.*?\])"
    )
    if "Config name is missing" in message:
        return DataError(
            f"Hugging Face dataset {name} has several configs; pick one with --hf {name}:CONFIG "
            f"(available: {', '.join(available or ['?'])})"
        )
    if "not found. Available" in message:
        return DataError(
            f"Hugging Face dataset {name} has no config '{config}'; available configs: {', '.join(available)}"
        )
    if "Couldn't find cache" in message:
        return DataError(_not_cached(name, config, available))
    multiple = re.search(r"multiple '.*?' configurations in the cache: ([^\n]*)", message)
    if multiple:
        return DataError(
            f"the local cache holds several configs of {name} ({multiple.group(1)}); pick one with --hf {name}:CONFIG"
        )
    return DataError(f"cannot read Hugging Face dataset {spec}: {message.splitlines()[0] if message else 'ValueError'}")


def _not_cached(name: str, config: str | None, cached: list[str] | None = None) -> str:
    shown = f"{name}:{config}" if config else name
    args = f"'{name}', '{config}'" if config else f"'{name}'"
    others = f" (the cache holds its configs {', '.join(cached)})" if cached else ""
    return (
        f"Hugging Face dataset {shown} is not in the local cache{others} and the hub cannot be reached: download it "
        "once "
        f'where there is internet (python -c "import datasets; datasets.load_dataset({args})") '
        "or point --hf at a local folder"
    )


def _as_dict(loaded, spec: str):
    if not hasattr(loaded, "keys"):
        raise DataError(f"Hugging Face dataset {spec} loaded as a single split; it needs 'train' and 'test' splits")
    return loaded


@contextlib.contextmanager
def _offline_mode(datasets):
    """Offline mode for datasets and huggingface_hub. Both read HF_HUB_OFFLINE once, at import."""
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _is_connection_error(exc: BaseException | None) -> bool:
    kinds: list[type] = [ConnectionError, TimeoutError]
    for module, attr in (("httpx", "TransportError"), ("requests.exceptions", "ConnectionError")):
        with contextlib.suppress(ImportError, AttributeError):
            kinds.append(getattr(__import__(module, fromlist=[attr]), attr))
    seen = 0
    while exc is not None and seen < 10:  # the hub client wraps network errors a few levels deep
        if isinstance(exc, tuple(kinds)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def _listed(message: str, pattern: str) -> list[str] | None:
    match = re.search(pattern, message)
    if not match:
        return None
    with contextlib.suppress(ValueError, SyntaxError):
        return [str(v) for v in ast.literal_eval(match.group(1))]
    return None
