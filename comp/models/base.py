"""The interface every model family implements, and what the training loop hands it.

Label matrices are indicator arrays of shape ``(n_samples, n_outputs)`` for every task:
multilabel 0/1 per class, multiclass one-hot, binary one column for the positive class.
``predict_proba`` returns the same shape: independent probabilities for multilabel and binary,
rows that sum to one for multiclass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class TaskInfo:
    task: str  # multilabel | multiclass | binary
    classes: list[str]  # probability column names, in order
    metric: str = "f1_macro"
    min_labels: int = 0
    negative: str | None = None  # binary: the negative class's name (the one column is the positive's)

    @property
    def n_outputs(self) -> int:
        return len(self.classes)


@dataclass
class FoldContext:
    """Where a fold may cache and save things, and how it reports progress."""

    fold: int
    seed: int
    cache_dir: Path  # workspace-wide cache shared by runs (embeddings, tokenised texts)
    fold_dir: Path  # runs/<run>/fold-<k>/ (with several seeds: fold-<k>/seed-<s>/)
    log: Callable[[str], None] = field(default=print)
    warn: Callable[[str], None] = field(default=lambda message: print(f"warning: {message}"))
    is_main_process: bool = True
    # (epoch, validation score): called by families that evaluate per epoch, so that a tuner can
    # prune the trial (it may raise to stop training; the fold then has no done marker)
    on_epoch: Callable[[float, float], None] | None = None
    # where the rows ``fit`` gets sit in train.csv, (train positions, valid positions): families that
    # draw from all of train (the prompt family's few-shot examples for test) rebuild file order from it
    positions: tuple[np.ndarray, np.ndarray] | None = None


class Model(Protocol):
    def __init__(self, config, task: TaskInfo, context: FoldContext) -> None: ...

    def fit(
        self,
        texts: Sequence[str],
        Y: np.ndarray,
        valid: tuple[Sequence[str], np.ndarray] | None = None,
    ) -> Model: ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    # optional: ``predict_oof(texts)`` for the fold's validation rows, where a family may leave rows
    # unscored (whole rows of NaN: a partial OOF, e.g. the prompt family's ``score_rows``); the
    # training loop records it and such a run is refused for blending and submission

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path, config, task: TaskInfo, context: FoldContext) -> Model: ...
