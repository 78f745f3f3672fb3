"""The linear head shared by the feature-based families (tfidf, embeddings).

Multilabel and binary: one logistic regression per class. Multiclass: one multinomial model.
A class that is constant in the training rows (all 0 or all 1 in a fold) gets its constant
prevalence as probability and a warning, instead of a crash.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def ngram_features(word_ngrams: list[int] | None, char_ngrams: list[int] | None, **vectorizer_args):
    """Word n-grams (words and punctuation as tokens) and char_wb n-grams side by side.
    ``vectorizer_args`` go to both TfidfVectorizers (min_df, sublinear_tf, binary, ...)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    parts = []
    if word_ngrams:
        parts.append(("word", TfidfVectorizer(analyzer="word", ngram_range=tuple(word_ngrams),
                                              token_pattern=r"(?u)\b\w+\b|[^\w\s]", **vectorizer_args)))
    if char_ngrams:
        parts.append(("char", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(char_ngrams), **vectorizer_args)))
    return FeatureUnion(parts)


class LinearHead:
    """Logistic-regression head on a feature matrix X of shape (n_samples, n_features).

    ``fit(X, Y)`` takes indicators Y of shape (n_samples, n_outputs); ``predict_proba(X)`` returns
    probabilities of the same shape (rows sum to one for multiclass).
    """

    def __init__(self, task: str, C: float = 1.0, class_weight: str | None = "balanced", max_iter: int = 1000,
                 n_jobs: int = 1, warn: Callable[[str], None] | None = None, class_names: list[str] | None = None,
                 random_state: int = 0):
        self.task = task
        self.C = C
        self.class_weight = None if class_weight in (None, "none") else class_weight
        self.max_iter = max_iter
        self.n_jobs = n_jobs
        self.warn = warn or (lambda message: None)
        self.class_names = class_names
        self.random_state = random_state  # liblinear's dual solver shuffles rows

    def __getstate__(self) -> dict:
        # the warning callback belongs to the process that trained the head, not to the saved model
        return {k: v for k, v in self.__dict__.items() if k != "warn"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.warn = lambda message: None

    def _name(self, j: int) -> str:
        return self.class_names[j] if self.class_names else str(j)

    def fit(self, X, Y: np.ndarray) -> LinearHead:
        from sklearn.linear_model import LogisticRegression

        Y = np.asarray(Y)
        self.n_outputs_ = Y.shape[1]
        if hasattr(X, "tocsr"):
            # canonical once, here: sklearn would otherwise sum duplicates in place from several threads
            X = X.tocsr()
            X.sum_duplicates()
        if self.task == "multiclass":
            y = Y.argmax(axis=1)
            present = np.unique(y)
            self.present_ = present
            if len(present) < 2:
                self.warn(f"only class '{self._name(int(present[0]))}' occurs in the training rows; predicting it")
                self.models_ = None
                return self
            missing = sorted(set(range(self.n_outputs_)) - set(present.tolist()))
            if missing:
                names = ", ".join(self._name(j) for j in missing)
                self.warn(f"class(es) {names} do not occur in the training rows; they get probability 0")
            self.models_ = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter,
                                              random_state=self.random_state).fit(X, y)
            return self

        # the dual problem is the faster one when features outnumber rows (sparse n-grams)
        dual = X.shape[1] > X.shape[0]

        def fit_one(j: int):
            y = Y[:, j]
            if y.min() == y.max():
                self.warn(
                    f"class '{self._name(j)}' is all {int(y[0])} in the training rows; predicting its constant "
                    f"prevalence {float(y.mean()):.0f}"
                )
                return float(y.mean())
            model = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, solver="liblinear",
                                       dual=dual, random_state=self.random_state)
            return model.fit(X, y)

        if self.n_jobs == 1 or self.n_outputs_ == 1:
            self.models_ = [fit_one(j) for j in range(self.n_outputs_)]
        else:
            from joblib import Parallel, delayed

            # liblinear releases the GIL, so threads avoid copying X into worker processes
            self.models_ = Parallel(n_jobs=self.n_jobs, backend="threading")(delayed(fit_one)(j) for j in range(self.n_outputs_))
        return self

    def predict_proba(self, X) -> np.ndarray:
        n = X.shape[0]
        if self.task == "multiclass":
            P = np.zeros((n, self.n_outputs_))
            if self.models_ is None:
                P[:, self.present_[0]] = 1.0
            else:
                P[:, self.models_.classes_] = self.models_.predict_proba(X)
            return P
        columns = [np.full(n, m) if isinstance(m, float) else m.predict_proba(X)[:, 1] for m in self.models_]
        return np.stack(columns, axis=1)
