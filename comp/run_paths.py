"""The files of one run (:class:`RunPaths`); the layout is described in comp.workspace."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    """Files of one run: a trained model family or an ensemble; both have the same files."""

    dir: Path
    name: str = ""  # as the user names it (``study/trial-3`` for a trial); default: the folder's name

    def __post_init__(self) -> None:
        if not self.name:
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

    # ---- seeds: with `seeds: N > 1` each fold is N tasks, fold-<k>/seed-<s>/ (comp.seeds) ---------
    def seed_dir(self, fold: int, seed_index: int) -> Path:
        """Written only by the task (fold, seed): its arrays, done.json, model/ and checkpoints."""
        return self.fold_dir(fold) / f"seed-{seed_index}"

    def task_dir(self, fold: int, seed_index: int, n_seeds: int) -> Path:
        """Where task (fold, seed) writes: the fold's own folder when the run has one seed."""
        return self.fold_dir(fold) if n_seeds == 1 else self.seed_dir(fold, seed_index)

    @property
    def tasks_dir(self) -> Path:
        """`--executor local`: one log per task (fold-3.log, fold-3-seed-1.log, worker-2.log)."""
        return self.dir / "tasks"

    @property
    def slurm_dir(self) -> Path:
        """`--executor slurm`: submitit's folder (job scripts, pickled tasks, %j logs)."""
        return self.dir / "slurm"
