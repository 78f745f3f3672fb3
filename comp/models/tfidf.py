"""`model: tfidf` — word n-grams + character n-grams (char_wb), sublinear TF, and a linear head.

The vectorizers are fitted on each fold's training rows only, so no vocabulary or IDF statistic
leaks from the validation rows into the OOF predictions.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from comp.atomic import write_bytes
from comp.config import ModelConfig
from comp.errors import ConfigError
from comp.models.base import FoldContext, TaskInfo
from comp.models.common import LinearHead, check_estimator, ngram_features


@dataclass
class Config(ModelConfig):
    model: str = "tfidf"
    word_ngrams: list[int] | None = field(default_factory=lambda: [1, 2])  # null: no word features
    char_ngrams: list[int] | None = field(default_factory=lambda: [2, 5])  # null: no char features
    min_df: int = 2
    max_df: int | float = 1.0  # a share of the documents (0.9), or a count (500)
    max_features: int | None = 200_000  # per analyzer
    sublinear_tf: bool = True
    lowercase: bool = True
    strip_accents: str | None = "unicode"
    C: float = 4.0
    class_weight: str = "balanced"  # balanced | none
    max_iter: int = 1000
    n_jobs: int = -1  # classes fitted in parallel processes (-1: one per core); the result does not depend on it

    def check(self, where: str) -> None:
        if self.word_ngrams is None and self.char_ngrams is None:
            raise ConfigError(f"{where}: word_ngrams and char_ngrams are both null; keep at least one")
        for name in ("word_ngrams", "char_ngrams"):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or not 1 <= value[0] <= value[1]):
                raise ConfigError(f"{where}: {name} must be [min, max] with 1 <= min <= max, got {value}")
        if self.class_weight not in ("balanced", "none"):
            raise ConfigError(f"{where}: class_weight must be balanced or none, got {self.class_weight!r}")
        if self.C <= 0:
            raise ConfigError(f"{where}: C must be positive, got {self.C}")
        if self.n_jobs == 0:
            raise ConfigError(f"{where}: n_jobs must be a number of processes (1, 2, ...) or -1 for all cores, got 0")
        if isinstance(self.max_df, int) and self.max_df < self.min_df:
            raise ConfigError(
                f"{where}: max_df {self.max_df} is below min_df {self.min_df}: no n-gram can pass both; raise max_df"
            )


def preflight(config: Config, task: TaskInfo) -> None:
    """scikit-learn's own checks of every vectorizer and classifier setting, before any fold starts."""
    model = Model(config, task, None)
    for _, vectorizer in model._vectorizer().transformer_list:
        check_estimator(vectorizer)
    for estimator in model._head(None).estimators(n_features=2, n_samples=1):
        check_estimator(estimator)


class Model:
    def __init__(self, config: Config, task: TaskInfo, context: FoldContext):
        self.config = config
        self.task = task
        self.context = context

    def _vectorizer(self):
        c = self.config
        return ngram_features(
            c.word_ngrams,
            c.char_ngrams,
            min_df=c.min_df,
            max_df=c.max_df,
            max_features=c.max_features,
            sublinear_tf=c.sublinear_tf,
            lowercase=c.lowercase,
            strip_accents=c.strip_accents,
            dtype=np.float32,
        )

    def fit(self, texts: Sequence[str], Y: np.ndarray, valid=None, sample_weight: np.ndarray | None = None) -> Model:
        """Y: (n_samples, n_outputs) indicators or soft targets; sample_weight: (n_samples,) or None."""
        self.vectorizer_ = self._vectorizer()
        try:
            X = self.vectorizer_.fit_transform(list(texts))
        except ValueError as exc:  # e.g. min_df too high for a tiny fold
            raise ConfigError(
                f"tfidf: cannot build features ({exc}); lower min_df or widen the n-gram ranges"
            ) from None
        self.head_ = self._head(self.context).fit(X, Y, sample_weight)
        return self

    def _head(self, context: FoldContext | None) -> LinearHead:
        return LinearHead(
            self.task.task,
            self.config.C,
            self.config.class_weight,
            self.config.max_iter,
            self.config.n_jobs,
            warn=context.warn if context else None,
            class_names=self.task.classes,
            random_state=context.seed if context else 0,
        )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.head_.predict_proba(self.vectorizer_.transform(list(texts)))

    def save(self, directory: Path) -> None:
        write_bytes(Path(directory) / "model.pkl", pickle.dumps((self.vectorizer_, self.head_)))

    @classmethod
    def load(cls, directory: Path, config: Config, task: TaskInfo, context: FoldContext) -> Model:
        model = cls(config, task, context)
        model.vectorizer_, model.head_ = pickle.loads((Path(directory) / "model.pkl").read_bytes())
        model.head_.warn = context.warn
        return model
