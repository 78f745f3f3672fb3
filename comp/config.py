"""Model configs: dataclass defaults < YAML file < `--set a.b=value` overrides.

Every family declares a ``Config`` dataclass (a subclass of :class:`ModelConfig`). Values are checked
against the field types, and unknown keys are errors that list the valid ones. Reading a config file
into its family's ``Config`` is :func:`comp.models.load_model_config`: this module knows no family, so
that the family modules can import it.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

from comp.errors import ConfigError

# YAML 1.1 reads 2e-5 (no dot) as a string; learning rates are written that way
_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


@dataclass
class PseudoLabels:
    """``pseudo_labels:``: unlabelled rows labelled by a teacher run's fold models (comp.second_stage)."""

    run: str = ""  # the teacher run
    mode: Literal["soft", "hard"] = "soft"  # soft: its probabilities as targets; hard: 0.5 / argmax labels
    min_confidence: float = 0.0  # keep a row when every class's max(p, 1 - p) (multiclass: max p) reaches it
    weight: float = 1.0  # each pseudo row's weight in the loss (a labelled row weighs 1)
    test: bool = True  # label test.csv's rows
    extra: str | None = None  # an unlabelled CSV (id and text columns of comp.yaml), relative to the workspace

    def check(self, where: str) -> None:
        if not self.run:
            raise ConfigError(f"{where}: name the teacher run, e.g. pseudo_labels: {{run: tfidf}}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError(f"{where}: min_confidence must be within [0, 1], got {self.min_confidence}")
        if not self.weight > 0:
            raise ConfigError(f"{where}: weight must be positive, got {self.weight}")
        if not self.test and not self.extra:
            raise ConfigError(
                f"{where}: test is false and no extra CSV is named: there is nothing to label; "
                "set test: true or extra: data/extra.csv"
            )


@dataclass
class Distill:
    """``distill:``: the teacher run's soft targets mixed with the labels (comp.second_stage)."""

    run: str = ""  # the teacher run
    alpha: float = 0.5  # target = alpha * teacher + (1 - alpha) * label
    temperature: float = 1.0  # softens the teacher's probabilities: log p / T, renormalised
    mode: Literal["fold_safe", "oof"] = "fold_safe"  # oof: the teacher's OOF, an optimistic CV

    def check(self, where: str) -> None:
        if not self.run:
            raise ConfigError(f"{where}: name the teacher run, e.g. distill: {{run: tfidf}}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(
                f"{where}: alpha must be within [0, 1] (the teacher's share of the target), got {self.alpha}"
            )
        if not self.temperature > 0:
            raise ConfigError(f"{where}: temperature must be positive, got {self.temperature}")


@dataclass
class ModelConfig:
    """Fields shared by every model family."""

    model: str = ""
    save_models: bool = False  # keep each fold's fitted model under runs/<run>/fold-<k>/
    seeds: int = 1  # models per fold, each with its own seed, probabilities averaged (comp.seeds)
    pseudo_labels: PseudoLabels | None = None  # train also on rows a teacher run labelled (comp.second_stage)
    distill: Distill | None = None  # mix a teacher run's soft targets into the labels (comp.second_stage)


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`["a.b=1", "c=x"]` -> `{"a": {"b": 1}, "c": "x"}`; values are parsed as YAML scalars."""
    import yaml

    tree: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{item}' is not of the form key=value (e.g. --set lr=2e-5)")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
            value = float(value)
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set '{item}': '{part}' is set both as a value and as a section")
        node[parts[-1]] = value
    return tree


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of settings, got {type(raw).__name__}")
    return raw


def build(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``raw``, checking keys and types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(sorted(fields))}")
    values = {name: coerce(raw[name], hints[name], f"{where}: {name}") for name in raw}
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    check = getattr(obj, "check", None)
    if callable(check):
        check(where)
    return obj


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` as ``annotation`` (int -> float is allowed), or raise ConfigError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(value, option, where)
            except ConfigError as exc:
                errors.append(exc)
        if len(options) == 1:  # Optional[X]: X's own message says more than "is not X or null"
            raise errors[0]
        raise ConfigError(f"{where}: {value!r} is not {_describe(annotation)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        return build(annotation, value, where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _describe(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    names = [getattr(a, "__name__", str(a)) for a in args]
    suffix = " or null" if type(None) in typing.get_args(annotation) else ""
    return " or ".join(names) + suffix


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def example_configs() -> dict[str, str]:
    """The example model configs shipped as package data (comp/configs/*.yaml): file name -> text.

    `comp init` copies them into a workspace's configs/. Read through importlib.resources, so they load
    from an installed wheel (even a zipped one) as well as from a checkout.
    """
    from importlib.resources import files

    folder = files("comp").joinpath("configs")
    return {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(folder.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".yaml")
    }
