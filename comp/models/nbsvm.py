"""`model: nbsvm` — NB-SVM (Wang & Manning, 2012) with logistic regression, a Kaggle classic.

Binarised word + char n-gram features are scaled, per class, by the naive-Bayes log-count ratio
r = log((p / |p|) / (q / |q|)) before a logistic regression. It errs differently from plain TF-IDF,
which is what makes the two blend well. Multiclass: one-vs-rest, probabilities renormalised.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from comp.atomic import write_bytes
from comp.config import ModelConfig
from comp.errors import ConfigError
from comp.models.base import FoldContext, TaskInfo
from comp.models.common import balanced_weights, check_estimator, ngram_features, one_vs_rest


@dataclass
class Config(ModelConfig):
    model: str = "nbsvm"
    word_ngrams: list[int] = field(default_factory=lambda: [1, 3])
    char_ngrams: list[int] | None = None
    min_df: int = 1
    max_features: int | None = 300_000
    alpha: float = 1.0  # Laplace smoothing of the feature counts
    C: float = 4.0
    class_weight: str = "balanced"  # balanced | none
    max_iter: int = 1000

    def check(self, where: str) -> None:
        if self.alpha <= 0 or self.C <= 0:
            raise ConfigError(f"{where}: alpha and C must be positive")
        if self.class_weight not in ("balanced", "none"):
            raise ConfigError(f"{where}: class_weight must be balanced or none, got {self.class_weight!r}")
        for name in ("word_ngrams", "char_ngrams"):
            value = getattr(self, name)
            if value is not None and (len(value) != 2 or not 1 <= value[0] <= value[1]):
                raise ConfigError(f"{where}: {name} must be [min, max] with 1 <= min <= max, got {value}")
        if not self.word_ngrams and not self.char_ngrams:
            raise ConfigError(f"{where}: word_ngrams and char_ngrams are both empty; keep at least one")


def preflight(config: Config, task: TaskInfo) -> None:
    """scikit-learn's own checks of the vectorizer and classifier settings, before any fold starts."""
    model = Model(config, task, None)
    for _, vectorizer in model._vectorizer().transformer_list:
        check_estimator(vectorizer)
    check_estimator(model._classifier(dual=True))


class Model:
    def __init__(self, config: Config, task: TaskInfo, context: FoldContext):
        self.config = config
        self.task = task
        self.context = context

    def _vectorizer(self):
        c = self.config
        # binary=True, use_idf=False, norm=None: presence features, as in the NB-SVM paper
        return ngram_features(
            c.word_ngrams,
            c.char_ngrams,
            binary=True,
            use_idf=False,
            norm=None,
            min_df=c.min_df,
            max_features=c.max_features,
            strip_accents="unicode",
            dtype=np.float32,
        )

    def fit(self, texts: Sequence[str], Y: np.ndarray, valid=None, sample_weight: np.ndarray | None = None) -> Model:
        """Y: (n_samples, n_outputs) indicators or soft targets in [0, 1]; sample_weight: (n_samples,).
        Soft targets or row weights fit the weighted copies of :func:`comp.models.common.weighted_binary`."""
        self.vectorizer_ = self._vectorizer()
        try:
            X = self.vectorizer_.fit_transform(list(texts)).tocsr()
        except ValueError as exc:  # e.g. min_df too high for a tiny fold
            raise ConfigError(
                f"nbsvm: cannot build features ({exc}); lower min_df or widen the n-gram ranges"
            ) from None
        a = self.config.alpha
        self.models_, problems = one_vs_rest(Y, sample_weight, self.context.warn, lambda j: self.task.classes[j])
        self.ratios_ = [None] * len(self.models_)
        # the dual problem is the faster one when features outnumber rows
        dual = X.shape[1] > X.shape[0]
        for problem in problems:
            rows = X if problem.rows is None else X[problem.rows]
            y = problem.y
            if problem.weight is None:
                p = a + np.asarray(rows[y == 1].sum(axis=0)).ravel()
                q = a + np.asarray(rows[y == 0].sum(axis=0)).ravel()
                classifier, weight = self._classifier(dual), None
            else:
                # the count ratios sum each copy's weight: a soft row's target on the positive side,
                # one minus it on the negative side
                p = a + np.asarray(rows.T @ (problem.weight * y)).ravel()
                q = a + np.asarray(rows.T @ (problem.weight * (1 - y))).ravel()
                classifier = self._classifier(dual, balanced=False)
                weight = problem.weight
                if self.config.class_weight != "none":
                    weight = balanced_weights(y, weight)
            r = np.log((p / p.sum()) / (q / q.sum())).astype(np.float32)
            self.ratios_[problem.column] = r
            self.models_[problem.column] = classifier.fit(rows.multiply(r).tocsr(), y, sample_weight=weight)
        return self

    def _classifier(self, dual: bool, balanced: bool = True):

        weight = None if self.config.class_weight == "none" or not balanced else "balanced"
        seed = self.context.seed if self.context is not None else 0
        return LogisticRegression(
            C=self.config.C,
            class_weight=weight,
            solver="liblinear",
            dual=dual,
            random_state=seed,
            max_iter=self.config.max_iter,
        )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        X = self.vectorizer_.transform(list(texts)).tocsr()
        columns = [
            np.full(X.shape[0], m) if r is None else m.predict_proba(X.multiply(r).tocsr())[:, 1]
            for r, m in zip(self.ratios_, self.models_, strict=True)
        ]
        P = np.stack(columns, axis=1)
        if self.task.task == "multiclass":
            P = P / np.clip(P.sum(axis=1, keepdims=True), 1e-12, None)
        return P

    def save(self, directory: Path) -> None:
        write_bytes(Path(directory) / "model.pkl", pickle.dumps((self.vectorizer_, self.ratios_, self.models_)))

    @classmethod
    def load(cls, directory: Path, config: Config, task: TaskInfo, context: FoldContext) -> Model:
        model = cls(config, task, context)
        model.vectorizer_, model.ratios_, model.models_ = pickle.loads((Path(directory) / "model.pkl").read_bytes())
        return model
