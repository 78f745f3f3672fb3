"""Model families. `model: NAME` in a config selects the module registered as NAME in ``FAMILIES``.

A family is a module that defines:

- ``Config``: a :class:`comp.config.ModelConfig` dataclass. Its ``check(where)`` is the pure, static
  check of the values (types, ranges, combinations), run whenever a config is built: by
  `comp train`, and by `comp predict` on the config stored in run.yaml. It must not depend on the
  machine (installed trackers, GPUs, files), since a stored config is rebuilt elsewhere.
- ``Model``: see :mod:`comp.models.base`.
- optionally ``preflight(config, task: TaskInfo) -> None``: the training-time check, run by
  `comp train` right after the config is loaded and before any fold file, run.yaml or fold is
  written. It raises :class:`comp.errors.ConfigError` (one line naming the key, the value and what to
  do) for anything that would otherwise fail inside fold 0 or later: values a library would reject
  (build the sklearn estimator and let its own parameter validation speak, rather than re-listing
  its rules), a backbone path that does not exist, a tracker that is not installed, a device that is
  not there. :func:`preflight` calls it.
- optionally ``inputs(config) -> dict[str, str]``: the files outside the workspace that a fold trains
  from, by config key, each as a fingerprint of its contents (``{"backbone": ...}``). run.yaml records
  them, and a run whose inputs changed is not resumed (comp.run_identity). :func:`run_inputs` calls it.

Adding a family means adding its module and one line in ``FAMILIES``; nothing else changes.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from comp.config import build, merge, parse_overrides, read_yaml
from comp.errors import ConfigError

# model name -> module; an explicit registry, so helper modules are never taken for families
FAMILIES: dict[str, str] = {
    "tfidf": "comp.models.tfidf",
    "nbsvm": "comp.models.nbsvm",
    "embeddings": "comp.models.embeddings",
    "transformer": "comp.models.transformer",
    "prompt": "comp.models.prompt",
    "generative": "comp.models.generative",
}


def available_families() -> list[str]:
    return sorted(FAMILIES)


def get_family(name: str, where: str = "config") -> ModuleType:
    if name not in FAMILIES:
        raise ConfigError(f"{where}: unknown model '{name}'; available models are: {', '.join(available_families())}")
    module = importlib.import_module(FAMILIES[name])
    for attr in ("Config", "Model"):
        if not hasattr(module, attr):
            raise ConfigError(f"model family '{name}' defines no {attr}")
    return module


def build_model_config(raw: dict[str, Any], where: str) -> Any:
    """The ``Config`` of the family that ``raw["model"]`` names, built from ``raw`` and checked."""
    family_name = raw.get("model")
    if not family_name:
        raise ConfigError(f"{where}: no 'model:' key; name a model family, e.g. model: tfidf")
    family = get_family(str(family_name), where=where)
    return build(family.Config, raw, where)


def load_model_config(path: str | Path, overrides: list[str] | None = None) -> Any:
    """Read a model config file, apply `--set` overrides and return the family's Config object."""
    path = Path(path)
    return build_model_config(merge(read_yaml(path), parse_overrides(overrides)), str(path))


def run_inputs(family: ModuleType, config) -> dict[str, str]:
    """The family's ``inputs(config)`` when it defines one, else none (see the module docstring)."""
    inputs = getattr(family, "inputs", None)
    return dict(inputs(config)) if callable(inputs) else {}


def preflight(family: ModuleType, config, task) -> None:
    """Run the family's ``preflight(config, task)`` when it defines one (see the module docstring)."""
    check = getattr(family, "preflight", None)
    if callable(check):
        check(config, task)
