"""The linear head shared by the feature-based families (tfidf, embeddings).

Multilabel and binary: one logistic regression per class. Multiclass: one multinomial model.
A class that is constant in the training rows (all 0 or all 1 in a fold) gets its constant
prevalence as probability and a warning, instead of a crash.

Bit-reproducible: the same rows and seed give the same bytes, however many jobs fit the classes.
liblinear's dual solver shuffles coordinates with one process-wide random generator (sklearn's
``newrand.h``: a global ``mt19937``, re-seeded by every ``fit``), so classes fitted in parallel
*threads* draw from each other's stream and their models differ by ~1e-5 from run to run. Parallel
fits therefore run in worker *processes* (joblib's loky backend, which memory-maps the feature
matrix instead of copying it), each with its own generator.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion
from sklearn.utils._param_validation import InvalidParameterError

from comp.errors import ConfigError


def ngram_features(word_ngrams: list[int] | None, char_ngrams: list[int] | None, **vectorizer_args):
    """Word n-grams (words and punctuation as tokens) and char_wb n-grams side by side.
    ``vectorizer_args`` go to both TfidfVectorizers (min_df, sublinear_tf, binary, ...)."""

    parts = []
    if word_ngrams:
        parts.append(
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=tuple(word_ngrams),
                    token_pattern=r"(?u)\b\w+\b|[^\w\s]",
                    **vectorizer_args,
                ),
            )
        )
    if char_ngrams:
        parts.append(("char", TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(char_ngrams), **vectorizer_args)))
    return FeatureUnion(parts)


def check_estimator(estimator, keys: dict[str, str] | None = None) -> None:
    """Let scikit-learn validate ``estimator``'s parameters as ``fit`` would, before any fold starts.

    Its own message is kept (it states the allowed range); ``keys`` maps sklearn's parameter names
    to the config keys that set them, so the error starts with the key to fix (the training loop
    adds the config file's name).
    """

    try:
        estimator._validate_params()  # what every sklearn estimator runs at the start of fit
    except InvalidParameterError as exc:
        found = re.search(r"The '(\w+)' parameter", str(exc))
        param = found.group(1) if found else None
        key = (keys or {}).get(param, param) if param else "a setting"
        value = estimator.get_params().get(param) if param else None
        raise ConfigError(f"{key}: {value!r} is rejected by scikit-learn ({exc}); fix {key}") from None


def _fit_logistic(
    X, y: np.ndarray, params: dict, sample_weight: np.ndarray | None = None
) -> tuple[object, list[tuple[type, str]]]:
    """One logistic regression, and the warnings it raised (a worker process cannot log them)."""

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LogisticRegression(**params).fit(X, y, sample_weight=sample_weight)
    return model, [(w.category, str(w.message)) for w in caught]


def is_hard(Y: np.ndarray) -> bool:
    """Whether ``Y`` holds only 0/1 indicators (not soft targets)."""
    Y = np.asarray(Y)
    return bool(np.isin(Y, (0, 1)).all())


def balanced_weights(y: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Row weights times class_weight='balanced' computed from weighted counts: total / (n_classes *
    class total), sklearn's formula with sample weights (sklearn before 1.6 counts rows instead)."""
    classes, index = np.unique(y, return_inverse=True)
    totals = np.bincount(index, weights=weight)
    return weight * (weight.sum() / (len(classes) * totals))[index]


def weighted_binary(t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One class's soft targets ``t`` (n,) in [0, 1] with row weights ``w`` (n,) as weighted 0/1 rows:
    a row is a positive of weight w*t and a negative of weight w*(1-t) (one copy when t is 0 or 1).
    Logistic loss is linear in its target, so this is the soft-target cross-entropy exactly.
    Returns (row index, label, weight), positives first."""
    pos, neg = np.flatnonzero(t > 0), np.flatnonzero(t < 1)
    idx = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    return idx, y, np.concatenate([w[pos] * t[pos], w[neg] * (1 - t[neg])])


def weighted_classes(T: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multiclass soft targets ``T`` (n, k) with row weights ``w`` (n,): one copy of a row per class it
    gives probability, weighted w*T[i, c]. Returns (row index, class, weight), in row order."""
    rows, classes = np.nonzero(T > 0)
    return rows, classes.astype(np.int64), w[rows] * T[rows, classes]


@dataclass
class BinaryProblem:
    """One class's binary problem in one-vs-rest: rows ``rows`` of the feature matrix (None: every
    row, in order), their 0/1 labels ``y`` and row weights ``weight`` (None: unweighted)."""

    column: int
    rows: np.ndarray | None
    y: np.ndarray
    weight: np.ndarray | None


def one_vs_rest(
    Y: np.ndarray,
    sample_weight: np.ndarray | None = None,
    warn: Callable[[str], None] | None = None,
    name: Callable[[int], str] = str,
) -> tuple[list, list[BinaryProblem]]:
    """Split targets ``Y`` (n_samples, n_outputs) into one binary problem per column: the one-vs-rest
    loop and constant-class handling of every per-class family (tfidf's and embeddings' linear
    head, nbsvm).

    Hard 0/1 ``Y`` without ``sample_weight``: every row with the column as label. Soft targets in
    [0, 1] or row weights: the weighted copies of :func:`weighted_binary`. Returns ``(models,
    problems)``: ``models`` has one entry per column, the constant prevalence (a float) of a column
    that is constant in the training rows (all 0 or all 1; soft: weight on one side only), announced
    through ``warn``, and None for the columns in ``problems``, which the caller fits.
    """
    Y = np.asarray(Y)
    warn = warn or (lambda message: None)
    weighted = sample_weight is not None or not is_hard(Y)
    if weighted:
        T = Y.astype(np.float64)
        w = np.ones(len(Y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    models: list = [None] * Y.shape[1]
    problems = []
    for j in range(Y.shape[1]):
        if weighted:
            rows, y, weight = weighted_binary(T[:, j], w)
        else:
            rows, y, weight = None, Y[:, j], None
        if y.min() < y.max():
            problems.append(BinaryProblem(j, rows, y, weight))
        elif weighted:
            models[j] = float(np.average(T[:, j], weights=w))
            warn(
                f"class '{name(j)}' carries weight on one side only in the training rows; predicting its "
                f"constant prevalence {models[j]:.3f}"
            )
        else:
            models[j] = float(y.mean())
            warn(
                f"class '{name(j)}' is all {int(y[0])} in the training rows; predicting its constant "
                f"prevalence {models[j]:.0f}"
            )
    return models, problems


def constant_or_proba(model, X) -> np.ndarray:
    """A one-vs-rest entry's positive-class probabilities (n_samples,): a float is a constant class's
    prevalence, anything else a fitted classifier."""
    return np.full(X.shape[0], model) if isinstance(model, float) else model.predict_proba(X)[:, 1]


class LinearHead:
    """Logistic-regression head on a feature matrix X of shape (n_samples, n_features).

    ``fit(X, Y)`` takes indicators Y of shape (n_samples, n_outputs); ``predict_proba(X)`` returns
    probabilities of the same shape (rows sum to one for multiclass).
    """

    def __init__(
        self,
        task: str,
        C: float = 1.0,
        class_weight: str | None = "balanced",
        max_iter: int = 1000,
        n_jobs: int = 1,
        warn: Callable[[str], None] | None = None,
        class_names: list[str] | None = None,
        random_state: int = 0,
    ):
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

    def estimators(self, n_features: int = 2, n_samples: int = 1) -> list:
        """The unfitted sklearn estimators ``fit`` builds (one kind per task), for parameter checks."""

        if self.task == "multiclass":
            return [LogisticRegression(**self._multinomial_params())]
        return [LogisticRegression(**self._binary_params(n_features > n_samples))]

    def _multinomial_params(self) -> dict:
        return {
            "C": self.C,
            "class_weight": self.class_weight,
            "max_iter": self.max_iter,
            "random_state": self.random_state,
        }

    def _binary_params(self, dual: bool) -> dict:
        return {
            "C": self.C,
            "class_weight": self.class_weight,
            "max_iter": self.max_iter,
            "solver": "liblinear",
            "dual": dual,
            "random_state": self.random_state,
        }

    def fit(self, X, Y: np.ndarray, sample_weight: np.ndarray | None = None) -> LinearHead:
        """``Y`` (n_samples, n_outputs): indicators, or soft targets in [0, 1] (multiclass rows summing
        to one); ``sample_weight`` (n_samples,) weighs rows. Either one fits weighted copies of the
        rows (see :func:`weighted_binary` and :func:`weighted_classes`)."""
        Y = np.asarray(Y)
        self.n_outputs_ = Y.shape[1]
        if hasattr(X, "tocsr"):
            # canonical once, here: sklearn would otherwise sum duplicates in place in each fit
            X = X.tocsr()
            X.sum_duplicates()
        if sample_weight is not None or not is_hard(Y):
            weights = np.ones(len(Y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
            return self._fit_weighted(X, Y.astype(np.float64), weights)
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
            self.models_, caught = _fit_logistic(X, y, self._multinomial_params())
            _reemit(caught)
            return self

        return self._fit_one_vs_rest(X, Y, None)

    def _fit_one_vs_rest(self, X, Y: np.ndarray, sample_weight: np.ndarray | None) -> LinearHead:
        """Multilabel and binary: one logistic regression per class (:func:`one_vs_rest`); with row
        weights or soft targets, class_weight 'balanced' is computed here from the weighted counts
        (sklearn before 1.6 counts rows, which would count a soft row for both labels)."""
        self.models_, problems = one_vs_rest(Y, sample_weight, self.warn, self._name)
        # the dual problem is the faster one when features outnumber rows (sparse n-grams)
        params = self._binary_params(X.shape[1] > X.shape[0])
        weighted_params = {**params, "class_weight": None}

        def arguments(problem: BinaryProblem) -> tuple:
            if problem.weight is None:
                return X, problem.y, params
            return X[problem.rows], problem.y, weighted_params, self._balanced(problem.y, problem.weight)

        if self.n_jobs == 1 or len(problems) <= 1:
            fitted = [_fit_logistic(*arguments(problem)) for problem in problems]
        else:
            from joblib import Parallel, delayed

            # processes, not threads: see the module docstring (liblinear's shared random generator)
            fitted = Parallel(n_jobs=self.n_jobs, backend="loky")(
                delayed(_fit_logistic)(*arguments(problem)) for problem in problems
            )
        for problem, (model, caught) in zip(problems, fitted, strict=True):
            self.models_[problem.column] = model
            _reemit(caught)
        return self

    def _fit_weighted(self, X, T: np.ndarray, w: np.ndarray) -> LinearHead:
        """Soft targets ``T`` and row weights ``w``: each row enters as one weighted copy per label it
        carries probability for (multiclass: :func:`weighted_classes`, else :func:`one_vs_rest`)."""
        if self.task == "multiclass":
            idx, y, weight = weighted_classes(T, w)
            present = np.unique(y)
            self.present_ = present
            if len(present) < 2:
                self.warn(
                    f"only class '{self._name(int(present[0]))}' carries weight in the training rows; predicting it"
                )
                self.models_ = None
                return self
            params = {**self._multinomial_params(), "class_weight": None}
            self.models_, caught = _fit_logistic(X[idx], y, params, self._balanced(y, weight))
            _reemit(caught)
            return self
        return self._fit_one_vs_rest(X, T, w)

    def _balanced(self, y: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return balanced_weights(y, weight) if self.class_weight == "balanced" else weight

    def predict_proba(self, X) -> np.ndarray:
        n = X.shape[0]
        if self.task == "multiclass":
            P = np.zeros((n, self.n_outputs_))
            if self.models_ is None:
                P[:, self.present_[0]] = 1.0
            else:
                P[:, self.models_.classes_] = self.models_.predict_proba(X)
            return P
        return np.stack([constant_or_proba(m, X) for m in self.models_], axis=1)


def _reemit(caught: list[tuple[type, str]]) -> None:
    """Raise the warnings of a fit again here, where the training loop records them in train.log."""
    for category, message in caught:
        warnings.warn(message, category, stacklevel=2)
