"""comp.yaml: the competition's settings (:class:`CompSettings`), checked when read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from comp.errors import ConfigError

COMP_YAML = "comp.yaml"
TASKS = ("multilabel", "multiclass", "binary")
SUBMISSION_FORMATS = ("labels", "probabilities")


@dataclass
class CompSettings:
    """Everything comp.yaml says. Schema fields left empty are inferred by `comp fetch`."""

    competition: str = ""
    task: str | None = None
    id_column: str | None = None
    text_columns: list[str] | None = None
    text_separator: str = "\n"
    label_columns: list[str] | None = None
    # class order of every probability file; multilabel: label_columns, multiclass: train's values,
    # binary: [negative, positive]
    classes: list[Any] | None = None
    metric: str = "f1_macro"
    folds: int = 5
    seed: int = 42
    group_column: str | None = None
    submission_format: str | None = None  # labels | probabilities
    min_labels: int = 0  # multilabel: every row gets at least this many labels
    allow_empty_text: bool = False

    @property
    def schema_complete(self) -> bool:
        return all(
            getattr(self, name) is not None
            for name in ("task", "id_column", "text_columns", "label_columns", "classes")
        )

    @property
    def output_names(self) -> list[str]:
        """Names of the probability columns, in class order."""
        self.require_schema()
        if self.task == "multilabel":
            return list(self.label_columns)
        if self.task == "binary":
            return [str(self.classes[1])]
        return [str(c) for c in self.classes]

    def require_schema(self) -> None:
        if not self.schema_complete:
            raise ConfigError(
                f"{COMP_YAML} has no complete schema (task, id_column, text_columns, label_columns, "
                "classes); run `comp fetch` to infer it or fill it in by hand"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = COMP_YAML) -> CompSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(sorted(known))}"
            )
        settings = cls(**raw)
        settings.validate(source)
        return settings

    def validate(self, source: str = COMP_YAML) -> None:
        """Check every value when comp.yaml is read, so that a bad one stops a command before any work."""
        if self.task is not None and self.task not in TASKS:
            raise ConfigError(f"{source}: task '{self.task}' is not one of {', '.join(TASKS)}")
        if self.submission_format is not None and self.submission_format not in SUBMISSION_FORMATS:
            raise ConfigError(
                f"{source}: submission_format '{self.submission_format}' is not one of {', '.join(SUBMISSION_FORMATS)}"
            )
        for name in ("competition", "metric"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{source}: {name} must be a string, got {getattr(self, name)!r}")
        for name in ("id_column", "group_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{source}: {name} must be a column name, got {value!r}")
        for name in ("text_columns", "label_columns"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = [value]
                setattr(self, name, value)
            if value is not None and (
                not isinstance(value, list) or not value or not all(isinstance(c, str) and c.strip() for c in value)
            ):
                raise ConfigError(
                    f"{source}: {name} must be a list of column names (e.g. {name}: "
                    f"[{'Tweet' if name == 'text_columns' else 'anger'}]), "
                    f"got {value!r}"
                )
        if self.classes is not None and (not isinstance(self.classes, list) or len(self.classes) < 2):
            raise ConfigError(f"{source}: classes must be a list of at least two classes, got {self.classes!r}")
        if self.text_separator is None and self.text_columns is not None and len(self.text_columns) > 1:
            raise ConfigError(
                f"{source}: text_separator is null but the {len(self.text_columns)} text_columns are joined with it; "
                'set text_separator: "\\n" (or " ")'
            )
        if self.text_separator is not None and not isinstance(self.text_separator, str):
            raise ConfigError(
                f'{source}: text_separator must be a string such as " " or "\\n", got {self.text_separator!r}'
            )
        if not isinstance(self.allow_empty_text, bool):
            raise ConfigError(f"{source}: allow_empty_text must be true or false, got {self.allow_empty_text!r}")
        for name in ("folds", "seed", "min_labels"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ConfigError(f"{source}: {name} must be an integer, got {getattr(self, name)!r}")
        if self.folds < 2:
            raise ConfigError(f"{source}: folds must be at least 2, got {self.folds}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"{source}: seed must be between 0 and 2**32 - 1, got {self.seed}")
        if self.min_labels < 0:
            raise ConfigError(
                f"{source}: min_labels must be 0 or more (labels every row gets at least), got {self.min_labels}"
            )
        if self.label_columns and self.task == "multilabel" and self.min_labels > len(self.label_columns):
            raise ConfigError(
                f"{source}: min_labels is {self.min_labels} but there are only {len(self.label_columns)} label columns"
            )
        from comp.metrics import METRICS

        if self.metric not in METRICS:
            raise ConfigError(f"{source}: metric '{self.metric}' is unknown; choose one of {', '.join(METRICS)}")


def check_folds(n_folds: int | None, settings: CompSettings, option: str = "--folds") -> int:
    """``--folds K`` as given, or comp.yaml's when not given; 0, 1 or a negative K is an error."""
    if n_folds is None:
        return settings.folds
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ConfigError(
            f"{option} {n_folds}: need at least 2 folds (leave {option} out to use comp.yaml's {settings.folds})"
        )
    return n_folds
