"""The workspace: comp.yaml and every on-disk name. The single source of the file layout.

```
<workspace>/
  comp.yaml                 competition settings (CompSettings)
  configs/<run>.yaml        one model per file
  data/                     train.csv, test.csv, sample_submission.csv, folds-k{K}-s{S}.csv
  runs/<run>/               run.yaml, oof.parquet, test.parquet, scores.json, thresholds.json, fold-<k>/,
                            .lock/ (run and fold locks: comp.locks)
  submissions/              <YYYYmmdd-HHMMSS>-<run>.csv, ledger.db
  .cache/                   embeddings and tokenised texts, safe to delete
```
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comp.atomic import write_yaml
from comp.errors import CompError, ConfigError

COMP_YAML = "comp.yaml"
TASKS = ("multilabel", "multiclass", "binary")
SUBMISSION_FORMATS = ("labels", "probabilities")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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
                f"{source}: submission_format '{self.submission_format}' is not one of "
                f"{', '.join(SUBMISSION_FORMATS)}"
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
            if value is not None and (not isinstance(value, list) or not value
                                      or not all(isinstance(c, str) and c.strip() for c in value)):
                raise ConfigError(
                    f"{source}: {name} must be a list of column names (e.g. {name}: [{'Tweet' if name == 'text_columns' else 'anger'}]), "
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
            raise ConfigError(f"{source}: text_separator must be a string such as \" \" or \"\\n\", got {self.text_separator!r}")
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
            raise ConfigError(f"{source}: min_labels must be 0 or more (labels every row gets at least), got {self.min_labels}")
        if self.label_columns and self.task == "multilabel" and self.min_labels > len(self.label_columns):
            raise ConfigError(
                f"{source}: min_labels is {self.min_labels} but there are only {len(self.label_columns)} label columns"
            )
        from comp.metrics import METRICS

        if self.metric not in METRICS:
            raise ConfigError(
                f"{source}: metric '{self.metric}' is unknown; choose one of {', '.join(METRICS)}"
            )


def check_folds(n_folds: int | None, settings: CompSettings, option: str = "--folds") -> int:
    """``--folds K`` as given, or comp.yaml's when not given; 0, 1 or a negative K is an error."""
    if n_folds is None:
        return settings.folds
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 2:
        raise ConfigError(f"{option} {n_folds}: need at least 2 folds (leave {option} out to use comp.yaml's {settings.folds})")
    return n_folds


def check_run_name(name: str) -> str:
    if not _RUN_NAME.match(name):
        raise CompError(
            f"run name '{name}' is not allowed: use letters, digits, '.', '_' and '-', starting with a "
            "letter or digit"
        )
    return name


class Workspace:
    """Paths of one competition workspace, and its comp.yaml."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    # ---- discovery -------------------------------------------------------------------------
    @classmethod
    def find(cls, start: str | Path | None = None) -> Workspace:
        """The workspace containing ``start`` (default: $COMP_WORKSPACE or the current folder)."""
        if start is None:
            start = os.environ.get("COMP_WORKSPACE") or Path.cwd()
        start = Path(start).resolve()
        for folder in (start, *start.parents):
            if (folder / COMP_YAML).is_file():
                return cls(folder)
        raise CompError(
            f"no {COMP_YAML} in {start} or any folder above it; run `comp init SLUG` to create a "
            "workspace, or pass --workspace DIR"
        )

    # ---- comp.yaml ---------------------------------------------------------------------------
    @property
    def settings_path(self) -> Path:
        return self.root / COMP_YAML

    def load_settings(self) -> CompSettings:
        import yaml

        try:
            raw = yaml.safe_load(self.settings_path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise CompError(f"{self.settings_path} not found; run `comp init SLUG` first") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self.settings_path} is not valid YAML: {_first_line(exc)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.settings_path} must be a mapping of settings")
        return CompSettings.from_dict(raw, source=str(self.settings_path))

    def save_settings(self, settings: CompSettings) -> None:
        write_yaml(self.settings_path, settings.to_dict())

    # ---- folders -----------------------------------------------------------------------------
    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def submissions_dir(self) -> Path:
        return self.root / "submissions"

    @property
    def cache_dir(self) -> Path:
        return self.root / ".cache"

    # ---- data files --------------------------------------------------------------------------
    @property
    def train_csv(self) -> Path:
        return self.data_dir / "train.csv"

    @property
    def test_csv(self) -> Path:
        return self.data_dir / "test.csv"

    @property
    def sample_submission_csv(self) -> Path:
        return self.data_dir / "sample_submission.csv"

    def folds_csv(self, folds: int, seed: int, group_column: str | None = None) -> Path:
        group = f"-g{group_column}" if group_column else ""
        return self.data_dir / f"folds-k{folds}-s{seed}{group}.csv"

    # ---- runs and submissions ----------------------------------------------------------------
    def run(self, name: str) -> RunPaths:
        return RunPaths(self.runs_dir / check_run_name(name))

    def run_names(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        return sorted(p.name for p in self.runs_dir.iterdir() if (p / "run.yaml").is_file())

    @property
    def reports_dir(self) -> Path:
        """`comp compare` output: reports/compare-<runs>/."""
        return self.root / "reports"

    @property
    def lb_plot(self) -> Path:
        return self.submissions_dir / "lb.png"

    @property
    def ledger_path(self) -> Path:
        return self.submissions_dir / "ledger.db"

    def submission_csv(self, run: str, stamp: str) -> Path:
        return self.submissions_dir / f"{stamp}-{run}.csv"

    def relative(self, path: Path) -> str:
        """A path as the user should see it: relative to the workspace when inside it."""
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)


@dataclass(frozen=True)
class RunPaths:
    """Files of one run: a trained model family or an ensemble; both have the same files."""

    dir: Path
    name: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.dir.name)

    @property
    def exists(self) -> bool:
        return self.run_yaml.is_file()

    @property
    def run_yaml(self) -> Path:
        return self.dir / "run.yaml"

    @property
    def oof(self) -> Path:
        return self.dir / "oof.parquet"

    @property
    def test(self) -> Path:
        return self.dir / "test.parquet"

    @property
    def scores(self) -> Path:
        return self.dir / "scores.json"

    @property
    def thresholds(self) -> Path:
        return self.dir / "thresholds.json"

    @property
    def weights(self) -> Path:
        return self.dir / "weights.json"

    @property
    def log(self) -> Path:
        return self.dir / "train.log"

    @property
    def report_dir(self) -> Path:
        return self.dir / "report"

    def fold_dir(self, fold: int) -> Path:
        return self.dir / f"fold-{fold}"

    def fold_done(self, fold: int) -> Path:
        """Written last, after the fold's arrays: its presence means the fold is finished."""
        return self.fold_dir(fold) / "done.json"

    def fold_oof(self, fold: int) -> Path:
        return self.fold_dir(fold) / "oof.npy"

    def fold_test(self, fold: int) -> Path:
        return self.fold_dir(fold) / "test.npy"

    def fold_model_dir(self, fold: int) -> Path:
        return self.fold_dir(fold) / "model"

    def fold_adapter_dir(self, fold: int) -> Path:
        return self.fold_dir(fold) / "adapter"

    def fold_checkpoint_dir(self, fold: int) -> Path:
        return self.fold_dir(fold) / "checkpoint"


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def init_workspace(slug: str, root: str | Path, example_configs: dict[str, str]) -> Workspace:
    """Create comp.yaml, configs/ (with the example configs), data/ and submissions/."""
    ws = Workspace(root)
    if ws.settings_path.exists():
        raise CompError(f"{ws.settings_path} already exists; this folder is already a workspace")
    for folder in (ws.configs_dir, ws.data_dir, ws.submissions_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for name, text in example_configs.items():
        target = ws.configs_dir / name
        if not target.exists():
            target.write_text(text, encoding="utf-8")
    ws.save_settings(CompSettings(competition=slug))
    return ws
