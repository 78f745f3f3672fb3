"""The search space of `comp tune`: a YAML file of config keys and how to draw them.

```yaml
C: {log_uniform: [0.1, 30]}          # float, log scale
max_df: {uniform: [0.5, 1.0]}        # float; add step: 0.05 for a grid
min_df: {int: [1, 5]}                # integer; step: 2, log: true also work
epochs: {int: [2, 6]}
class_weights: {choice: [balanced, sqrt]}
char_ngrams: {choice: [[2, 5], [1, 4], null]}   # any YAML values, lists and null included
peft.r: {choice: [8, 16, 32]}        # nested keys with dots
```

Every key is checked against the family's Config (an unknown key lists the valid ones), and every
bound and choice is built into a config and passed through the family's preflight, so a value the
model would reject stops `comp tune` before the first trial instead of failing trial after trial.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comp.config import _SCIENTIFIC, build, merge, read_yaml
from comp.errors import ConfigError

KINDS = ("log_uniform", "uniform", "int", "choice")
_NOT_TUNABLE = ("model", "seeds")


@dataclass(frozen=True)
class Param:
    """One dimension: config key ``key`` (dotted), drawn as ``kind`` from ``args``."""

    key: str
    kind: str  # log_uniform | uniform | int | choice
    args: tuple  # (low, high) or the choices
    step: float | int | None = None
    log: bool = False

    def suggest(self, trial) -> Any:
        """The value an Optuna trial draws (choices that are not scalars travel as JSON strings)."""
        if self.kind == "choice":
            drawn = trial.suggest_categorical(self.key, [_encode(c) for c in self.args])
            return _decode(drawn, self.args)
        low, high = self.args
        if self.kind == "int":
            return trial.suggest_int(self.key, low, high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, low, high, step=self.step, log=self.kind == "log_uniform")

    def extremes(self) -> list[Any]:
        return list(self.args)

    def describe(self) -> str:
        extra = (f", step {self.step}" if self.step else "") + (", log" if self.log else "")
        return f"{self.key}: {self.kind} {list(self.args)}{extra}"


def _encode(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else json.dumps(value)


def _decode(drawn: Any, choices: tuple) -> Any:
    for choice in choices:
        if _encode(choice) == drawn:
            return choice
    return drawn


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]
    source: str

    def suggest(self, trial) -> dict[str, Any]:
        """{dotted key: value} drawn for ``trial``."""
        return {p.key: p.suggest(trial) for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        """The space as study.yaml records it (to refuse a second worker with another space)."""
        return {
            p.key: {p.kind: list(p.args), **({"step": p.step} if p.step else {}), **({"log": True} if p.log else {})}
            for p in self.params
        }


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """``{"peft.r": 8, "C": 2}`` -> ``{"peft": {"r": 8}, "C": 2}``."""
    tree: dict[str, Any] = {}
    for key, value in values.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def resolved_raw(config_path: Path, overrides: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The config file's mapping with ``overrides`` (already nested) and a trial's ``values`` applied."""
    return merge(merge(read_yaml(config_path), overrides), nested(values))


def _number(value: Any, where: str) -> float:
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


def _valid_keys(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every dotted key of a Config dataclass (nested dataclasses and mappings), with its type."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{prefix}{f.name}"
        annotation = hints[f.name]
        inner = [a for a in (typing.get_args(annotation) or (annotation,)) if dataclasses.is_dataclass(a)]
        if inner:
            out.update(_valid_keys(inner[0], f"{key}."))
        else:
            out[key] = annotation
    return out


def parse_param(key: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict) or not (set(spec) & set(KINDS)):
        raise ConfigError(
            f"{where}: {key}: expected one of {', '.join(f'{{{k}: ...}}' for k in KINDS)}, got {spec!r} "
            "(e.g. C: {log_uniform: [0.1, 30]})"
        )
    kinds = [k for k in KINDS if k in spec]
    unknown = sorted(set(spec) - set(KINDS) - {"step", "log"})
    if len(kinds) > 1 or unknown:
        raise ConfigError(
            f"{where}: {key}: give one of {', '.join(KINDS)} (with optional step, log), got {sorted(spec)}"
        )
    kind, args = kinds[0], spec[kinds[0]]
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{where}: {key}: {kind} takes a list ({kind}: [low, high]), got {args!r}")
    step, log = spec.get("step"), spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: {key}: log must be true or false, got {log!r}")
    if kind == "choice":
        if step is not None or log:
            raise ConfigError(f"{where}: {key}: choice takes no step or log")
        encoded = [_encode(c) for c in args]
        if len(set(map(json.dumps, encoded))) != len(encoded):
            raise ConfigError(f"{where}: {key}: a choice is listed twice in {args}")
        return Param(key, kind, tuple(args))
    if len(args) != 2:
        raise ConfigError(f"{where}: {key}: {kind} takes [low, high], got {args!r}")
    low, high = (_number(a, f"{where}: {key}") for a in args)
    if kind == "int":
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise ConfigError(f"{where}: {key}: int takes integer bounds, got {args!r} (use uniform for floats)")
        if step is not None and (not isinstance(step, int) or step < 1):
            raise ConfigError(f"{where}: {key}: an int step must be a positive integer, got {step!r}")
    elif step is not None:
        step = _number(step, f"{where}: {key}: step")
        if step <= 0:
            raise ConfigError(f"{where}: {key}: step must be positive, got {step}")
    if low > high:
        raise ConfigError(f"{where}: {key}: low {low} is above high {high}")
    if (kind == "log_uniform" or log) and low <= 0:
        raise ConfigError(f"{where}: {key}: a log scale needs low > 0, got {low}")
    if kind == "log_uniform" and step is not None:
        raise ConfigError(f"{where}: {key}: log_uniform takes no step (use uniform with step)")
    if kind == "int" and log and step not in (None, 1):
        raise ConfigError(f"{where}: {key}: an int on a log scale takes no step")
    if kind != "int":
        low, high = float(low), float(high)
    return Param(key, kind, (low, high), step, log)


def load_space(path: Path, family, config_path: Path, overrides: dict[str, Any], task) -> Space:
    """Read and check ``path`` against ``family`` (see the module docstring)."""
    from comp.models import preflight

    raw = read_yaml(path)
    where = str(path)
    if not raw:
        raise ConfigError(
            f"{where}: the search space is empty; give at least one key, e.g. C: {{log_uniform: [0.1, 30]}}"
        )
    valid = _valid_keys(family.Config)
    params = []
    for key, spec in raw.items():
        key = str(key)
        if key in _NOT_TUNABLE:
            raise ConfigError(
                f"{where}: {key} cannot be tuned (it is {'the family' if key == 'model' else 'seed averaging'})"
            )
        if key not in valid:
            raise ConfigError(
                f"{where}: unknown key '{key}' for model '{family.Config().model}'; valid keys are: "
                f"{', '.join(k for k in sorted(valid) if k not in _NOT_TUNABLE)}"
            )
        params.append(parse_param(key, spec, where))
    space = Space(tuple(params), where)
    for p in params:  # each bound and choice, the others as in the config
        for value in p.extremes():
            try:
                config = build(family.Config, resolved_raw(config_path, overrides, {p.key: value}), str(config_path))
                preflight(family, config, task)
            except ConfigError as exc:
                raise ConfigError(
                    f"{where}: {p.key} = {value!r} is not a valid value ({exc}); narrow the range"
                ) from None
    return space
