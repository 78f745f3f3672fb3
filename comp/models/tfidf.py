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
from comp.models.common import LinearHead, ngram_features


@dataclass
class Config(ModelConfig):
    model: str = "tfidf"
    word_ngrams: list[int] | None = field(default_factory=lambda: [1, 2])  # null: no word features
    char_ngrams: list[int] | None = field(default_factory=lambda: [2, 5])  # null: no char features
    min_df: int = 2
    max_df: float = 1.0
    max_features: int | None = 200_000  # per analyzer
    sublinear_tf: bool = True
    lowercase: bool = True
    strip_accents: str | None = "unicode"
    C: float = 4.0
    class_weight: str = "balanced"  # balanced | none
    max_iter: int = 1000
    n_jobs: int = -1  # classes fitted in parallel threads

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


class Model:
    def __init__(self, config: Config, task: TaskInfo, context: FoldContext):
        self.config = config
        self.task = task
        self.context = context

    def _vectorizer(self):
        c = self.config
        return ngram_features(c.word_ngrams, c.char_ngrams, min_df=c.min_df, max_df=c.max_df,
                              max_features=c.max_features, sublinear_tf=c.sublinear_tf, lowercase=c.lowercase,
                              strip_accents=c.strip_accents, dtype=np.float32)

    def fit(self, texts: Sequence[str], Y: np.ndarray, valid=None) -> Model:
        self.vectorizer_ = self._vectorizer()
        try:
            X = self.vectorizer_.fit_transform(list(texts))
        except ValueError as exc:  # e.g. min_df too high for a tiny fold
            raise ConfigError(f"tfidf: cannot build features ({exc}); lower min_df or widen the n-gram ranges") from None
        self.head_ = LinearHead(self.task.task, self.config.C, self.config.class_weight, self.config.max_iter,
                                self.config.n_jobs, warn=self.context.warn, class_names=self.task.classes,
                                random_state=self.context.seed).fit(X, Y)
        return self

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
