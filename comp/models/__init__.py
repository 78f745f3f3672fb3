"""Model families. `model: NAME` in a config selects the module ``comp.models.NAME``.

A family is a module that defines ``Config`` (a :class:`comp.config.ModelConfig` dataclass) and
``Model`` (see :mod:`comp.models.base`). Adding a family means adding a module: nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from comp.errors import ConfigError

_NOT_FAMILIES = {"base", "common", "hf"}  # hf: the transformer machinery, not a family


def available_families() -> list[str]:
    import comp.models

    return sorted(
        m.name
        for m in pkgutil.iter_modules(comp.models.__path__)
        if not m.name.startswith("_") and m.name not in _NOT_FAMILIES
    )


def get_family(name: str, where: str = "config") -> ModuleType:
    families = available_families()
    if name not in families:
        raise ConfigError(
            f"{where}: unknown model '{name}'; available models are: {', '.join(families)}"
        )
    module = importlib.import_module(f"comp.models.{name}")
    for attr in ("Config", "Model"):
        if not hasattr(module, attr):
            raise ConfigError(f"model family '{name}' defines no {attr}")
    return module
