"""run.yaml as a typed record: :class:`RunRecord`, read and written through ``comp.config.build``.

The record is built with the same checks as a model config (unknown keys, field types), as peft
round-trips ``adapter_config.json`` through its config class. Each file carries ``schema_version``;
a file without one was written before the field existed, in the same layout: version 1. A newer
version, a missing required field or a wrong type is one :class:`~comp.errors.RunError` line naming
the file and the field.

```yaml
schema_version: 1
name: tfidf
kind: model                      # model | ensemble
model: tfidf                     # an ensemble: ensemble(<method>)
config: {...}                    # the family's Config as a mapping (an ensemble: its blender's)
config_file: configs/tfidf.yaml  # models only
members: [a, b]                  # ensembles only
folds: {file: folds/folds-k5-s42.csv, hash: ..., n_folds: 5, seed: 42, group_column: null}
competition: {slug: ..., task: multilabel, metric: f1_macro, classes: [...]}
data: {...}                      # comp.fingerprint.data_fingerprint
inputs: {backbone: 3f2a...}      # families with a backbone: comp.models.hf.hub.backbone_identity
second_stage: {pseudo_labels: {...}, distill: {...}}   # a student of comp.second_stage only
cv_optimistic: true              # only when it is, with cv_optimistic_reason
partial_oof: {scored_rows: 40, train_rows: 200}        # only when the OOF is partial
digest: ...                      # models only: config + folds + data (+ teachers), hashed
versions: {comp: ..., numpy: ...}
git_commit: ...
created: 2026-03-01T12:00:00
completed: 2026-03-01T12:05:00
seconds: 12.5
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from comp.config import build
from comp.errors import ConfigError, RunError, first_line

# the layout this comp writes; a file without schema_version is version 1 (the same layout)
SCHEMA_VERSION = 1


@dataclass
class FoldsRecord:
    """The shared fold file a run was trained on."""

    file: str  # relative to the workspace
    hash: str
    n_folds: int
    seed: int
    group_column: str | None = None

    def same_file(self, other: FoldsRecord) -> bool:
        return (self.file, self.hash) == (other.file, other.hash)


@dataclass
class CompetitionRecord:
    """What comp.yaml said when the run was trained."""

    slug: str
    task: str
    metric: str
    classes: list[str]


@dataclass
class PartialOof:
    """A run that scored only some train rows (the prompt family's ``score_rows``)."""

    scored_rows: int
    train_rows: int


@dataclass
class TeacherRecord:
    """A student's teacher (comp.second_stage): its identity and how the student used it."""

    run: str
    outputs: str  # comp.teachers.outputs_hash of the teacher's files when the student started
    mode: str
    digest: str | None = None
    folds: dict[str, Any] | None = None  # the teacher's fold file: {file, hash}
    data: str | None = None  # a hash of the teacher's data fingerprint
    weight: float | None = None  # pseudo_labels only
    min_confidence: float | None = None
    test: bool | None = None
    extra: dict[str, Any] | None = None  # the extra CSV: {file, hash, rows}
    alpha: float | None = None  # distill only
    temperature: float | None = None


@dataclass
class SecondStageRecord:
    pseudo_labels: TeacherRecord | None = None
    distill: TeacherRecord | None = None

    def teachers(self) -> dict[str, TeacherRecord]:
        """{"pseudo_labels" | "distill": teacher} of the teachers this student has."""
        return {k: t for k, t in (("pseudo_labels", self.pseudo_labels), ("distill", self.distill)) if t is not None}


@dataclass
class RunRecord:
    """One run's run.yaml (a trained model or an ensemble)."""

    name: str
    kind: Literal["model", "ensemble"]
    model: str
    folds: FoldsRecord
    competition: CompetitionRecord
    created: str
    config: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None  # models: the config file, relative to the workspace
    members: list[str] = field(default_factory=list)  # ensembles: the member runs
    data: dict[str, Any] | None = None  # None: made by a comp older than data fingerprints (refused by check_data)
    # files outside the workspace that the folds were trained from, by config key: {backbone: fingerprint}
    inputs: dict[str, str] = field(default_factory=dict)
    second_stage: SecondStageRecord | None = None
    cv_optimistic: bool = False
    cv_optimistic_reason: str | None = None
    partial_oof: PartialOof | None = None
    digest: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    completed: str | None = None
    seconds: float | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def is_ensemble(self) -> bool:
        return self.kind == "ensemble"

    @property
    def optimistic_reason(self) -> str | None:
        """Why the run's CV is optimistic, or None when it is not."""
        if not self.cv_optimistic:
            return None
        return self.cv_optimistic_reason or "marked cv_optimistic"

    def rebuild_hint(self) -> str:
        """What rebuilds the run's files: `comp ensemble --force` for a blend, `comp train` for a model."""
        if self.is_ensemble:
            members = " ".join(self.members or ["RUN", "RUN"])
            method = self.config.get("method", "mean")
            return f"re-create it with `comp ensemble {members} --name {self.name} --method {method} --force`"
        return rebuild_hint(self.name, self.config_file)


def rebuild_hint(name: str, config_file: str | None = None) -> str:
    """What rebuilds a model run whose run.yaml is not readable (or names its config file)."""
    return (
        f"re-run `comp train {config_file or 'CONFIG'}` (with --name {name} if it differs from the file name) "
        "to rebuild it"
    )


# ---- the mapping run.yaml holds -------------------------------------------------------------------

# written first, in this order, so run.yaml reads top-down like the docstring above
_ORDER = (
    "schema_version",
    "name",
    "kind",
    "model",
    "config",
    "config_file",
    "members",
    "folds",
    "competition",
    "data",
    "inputs",
    "second_stage",
    "cv_optimistic",
    "cv_optimistic_reason",
    "partial_oof",
    "digest",
    "versions",
    "git_commit",
    "created",
    "completed",
    "seconds",
)


def to_dict(record: RunRecord) -> dict[str, Any]:
    """The mapping run.yaml stores: fields in a fixed order; unset optional ones (None, false, an
    empty member list) are left out, so a model's file has no ensemble keys and the reverse."""
    raw = plain(record)
    return {key: raw[key] for key in _ORDER if key in raw}


def plain(obj: Any) -> Any:
    """A record (or part of one) as the plain mapping run.yaml holds: unset optional fields left out."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            empty = f.name in ("members", "inputs") and not value  # a model has no members, a tfidf no inputs
            if value is None or (f.default is False and value is False) or empty:
                continue
            out[f.name] = plain(value)
        return out
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def from_dict(raw: Any, path: Path | str, fix: str) -> RunRecord:
    """The record of run.yaml's mapping ``raw``; refused in one line naming ``path`` and the field,
    ending with ``fix`` (what rebuilds the file)."""
    if not isinstance(raw, dict):
        raise RunError(f"{path} is damaged (not a mapping of settings); {fix}")
    version = raw.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise RunError(f"{path}: schema_version must be an integer, got {version!r}; {fix}")
    if version > SCHEMA_VERSION:
        raise RunError(
            f"{path} has schema_version {version}, newer than this comp reads ({SCHEMA_VERSION}); "
            "upgrade comp (pip install -U comp) to read this run"
        )
    if version < 1:
        raise RunError(f"{path}: schema_version {version} is unknown (versions start at 1); {fix}")
    missing = _missing(RunRecord, raw, "")
    if missing:
        raise RunError(f"{path}: {missing} is missing; {fix}")
    try:
        return build(RunRecord, {**raw, "schema_version": version}, str(path))
    except ConfigError as exc:
        raise RunError(f"{exc.args[0]}; {fix}") from None


def _missing(cls: type, raw: dict[str, Any], prefix: str) -> str | None:
    """The first required field of dataclass ``cls`` (nested ones too) that ``raw`` lacks, dotted."""
    nested = {"folds": FoldsRecord, "competition": CompetitionRecord, "partial_oof": PartialOof}
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in raw:
            return f"{prefix}{f.name}"
        inner = nested.get(f.name) if cls is RunRecord else None
        if inner is not None and isinstance(raw.get(f.name), dict):
            found = _missing(inner, raw[f.name], f"{prefix}{f.name}.")
            if found:
                return found
    if cls is RunRecord and isinstance(raw.get("second_stage"), dict):
        for key, teacher in raw["second_stage"].items():
            if isinstance(teacher, dict):
                found = _missing(TeacherRecord, teacher, f"second_stage.{key}.")
                if found:
                    return found
    return None


def read_record(path: Path, name: str) -> RunRecord:
    """run.yaml at ``path`` (of run ``name``) as a record; a damaged file is one RunError line."""
    import yaml

    fix = rebuild_hint(name)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is damaged ({first_line(exc)}); {fix}") from None
    except OSError as exc:
        raise RunError(f"{path} cannot be read ({exc.strerror or exc}); check its permissions") from None
    if isinstance(raw, dict) and raw.get("kind") == "ensemble":
        members = raw.get("members") if isinstance(raw.get("members"), list) else []
        method = raw["config"].get("method", "mean") if isinstance(raw.get("config"), dict) else "mean"
        fix = (
            f"re-create it with `comp ensemble {' '.join(map(str, members or ['RUN', 'RUN']))} --name {name} "
            f"--method {method} --force`"
        )
    elif isinstance(raw, dict) and isinstance(raw.get("config_file"), str):
        fix = rebuild_hint(name, raw["config_file"])
    return from_dict(raw if raw is not None else {}, path, fix)


def write_record(path: Path, record: RunRecord) -> None:
    """Write run.yaml atomically (temp file, then rename)."""
    from comp.atomic import write_yaml

    write_yaml(path, to_dict(record))
