"""The workspace: comp.yaml and every on-disk name. The single source of the file layout.

```
<workspace>/
  comp.yaml                 competition settings (CompSettings)
  configs/<run>.yaml        one model per file
  data/                     train.csv, test.csv, sample_submission.csv, folds-k{K}-s{S}.csv
  runs/<run>/               run.yaml, oof.parquet, test.parquet, scores.json, thresholds.json, fold-<k>/
                            (with `seeds: N > 1`: fold-<k>/seed-<s>/ per seed), .lock/ (comp.locks)
  runs/<study>/             a `comp tune` study: study.yaml, study.journal, trial-<n>/ (each an ordinary
                            run, named <study>/trial-<n>), figures
  configs/<name>-best.yaml  the best trial's resolved config
  submissions/              <YYYYmmdd-HHMMSS>-<run>.csv, ledger.db
  .cache/                   embeddings and tokenised texts, safe to delete
```
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from comp.atomic import write_yaml
from comp.errors import CompError, ConfigError, first_line
from comp.run_paths import RunPaths
from comp.settings import COMP_YAML, SUBMISSION_FORMATS, TASKS, CompSettings, check_folds

__all__ = [
    "COMP_YAML",
    "STUDY_YAML",
    "SUBMISSION_FORMATS",
    "TASKS",
    "CompSettings",
    "RunPaths",
    "Workspace",
    "check_folds",
    "check_run_name",
    "file_safe",
    "init_workspace",
]

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STUDY_YAML = "study.yaml"  # marks runs/<study>/ as a study: its trials are runs named <study>/trial-<n>


def check_run_name(name: str) -> str:
    """A run's name: letters, digits, '.', '_', '-'; a study's trial is ``<study>/trial-<n>``."""
    parts = name.split("/")
    if len(parts) > 2 or not all(_RUN_NAME.match(part) for part in parts):
        raise CompError(
            f"run name '{name}' is not allowed: use letters, digits, '.', '_' and '-', starting with a "
            "letter or digit (a tuning trial is STUDY/trial-N)"
        )
    return name


def file_safe(name: str) -> str:
    """A run name as one file-name component (a trial's ``study/trial-3`` -> ``study--trial-3``)."""
    return name.replace("/", "--")


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
            raise ConfigError(f"{self.settings_path} is not valid YAML: {first_line(exc)}") from None
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
        return RunPaths(self.runs_dir / check_run_name(name), name)

    def run_names(self) -> list[str]:
        """Every run, a study's trials included (as ``<study>/trial-<n>``)."""
        if not self.runs_dir.is_dir():
            return []
        names = []
        for p in self.runs_dir.iterdir():
            if (p / "run.yaml").is_file():
                names.append(p.name)
            elif (p / STUDY_YAML).is_file():
                names += [f"{p.name}/{t.name}" for t in p.iterdir() if (t / "run.yaml").is_file()]
        return sorted(names, key=_natural)

    def study_dir(self, name: str) -> Path:
        return self.runs_dir / check_run_name(name)

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
        return self.submissions_dir / f"{stamp}-{file_safe(run)}.csv"

    def relative(self, path: Path) -> str:
        """A path as the user should see it: relative to the workspace when inside it."""
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)


def _natural(name: str) -> list:
    """Sort key in which trial-10 follows trial-9."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


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
