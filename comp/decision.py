"""The decision from probabilities to labels, and its untuned default: the one home of both.

Rule: multilabel and binary tasks predict a class when its probability is at least its threshold
(``p >= t``); multiclass tasks predict ``argmax(P + offsets)``. The untuned decision is
``p >= 0.5`` per class (multilabel, binary) and plain argmax, i.e. zero offsets (multiclass).
``min_labels=k`` (multilabel only): rows with fewer than k predicted labels get their most probable
missing classes (ties: lower class index).

Arrays are ``(n_samples, n_classes)`` as everywhere in comp (binary: one positive column).
"""

from __future__ import annotations

import numpy as np

from comp.errors import ConfigError, DataError
from comp.metrics import check_task

DEFAULT_THRESHOLD = 0.5  # the untuned probability threshold of multilabel and binary tasks


def default_thresholds(task: str, n_outputs: int) -> np.ndarray:
    """The untuned decision's thresholds ``(n_outputs,)``: 0.5 per class, multiclass zero offsets
    (plain argmax)."""
    check_task(task)
    return np.zeros(n_outputs) if task == "multiclass" else np.full(n_outputs, DEFAULT_THRESHOLD)


def default_label(task: str) -> str:
    """The untuned decision in words, for tables and figures: ``at 0.5`` or ``argmax``."""
    return "argmax" if task == "multiclass" else f"at {DEFAULT_THRESHOLD}"


def default_labels(P, task: str, min_labels: int = 0) -> np.ndarray:
    """Labels ``(n_samples, n_classes)`` int of the untuned decision for probabilities ``P``."""
    n_outputs = 1 if task == "binary" and np.ndim(P) == 1 else np.shape(P)[1]
    return apply_thresholds(P, default_thresholds(task, n_outputs), task, min_labels)


# ---- applying thresholds -----------------------------------------------------------------------


def apply_thresholds(P, thresholds, task: str, min_labels: int = 0) -> np.ndarray:
    """Labels ``(n_samples, n_classes)`` int from probabilities ``P`` of the same shape.

    Multilabel/binary: ``P >= thresholds`` (``(n_classes,)``), then ``min_labels`` for multilabel;
    multiclass: one-hot ``argmax(P + thresholds)`` (the thresholds are additive offsets).
    """
    check_task(task)
    P = np.asarray(P, dtype=np.float64)
    if task == "binary" and P.ndim == 1:
        P = P.reshape(-1, 1)
    if P.ndim != 2:
        raise DataError(f"probabilities must be an (n_samples, n_classes) matrix, got shape {P.shape}")
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size != P.shape[1]:
        raise DataError(
            f"{t.size} thresholds for {P.shape[1]} probability columns; fit the thresholds on "
            "probabilities with the same classes"
        )
    return decide(P, t, task, check_min_labels(min_labels)).astype(np.int64)


def decide(P: np.ndarray, t: np.ndarray, task: str, min_labels: int, top: np.ndarray | None = None) -> np.ndarray:
    """Boolean labels; ``top`` (n,): each row's argmax, if already known."""
    if task == "multiclass":
        labels = np.zeros(P.shape, dtype=bool, order="F")
        labels[np.arange(P.shape[0]), row_argmax(P + t)[0]] = True
        return labels
    labels = P >= t
    if task == "multilabel" and min_labels > 0:
        k = min(min_labels, P.shape[1])
        count = np.count_nonzero(labels, axis=1)
        short = np.flatnonzero(count < k)
        if short.size and k == 1:  # the common case, without sorting rows
            labels[short, np.argmax(P[short], axis=1) if top is None else top[short]] = True
        elif short.size:
            rank = missing_rank(P[short], labels[short])
            labels[short] |= rank < (k - count[short])[:, None]
    return labels


def row_argmax(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(argmax, max)`` of ``S`` (n, C), ties to the lower column like ``np.argmax``; a
    loop over columns, several times faster than ``argmax(axis=1)`` for few columns."""
    best = S[:, 0].copy()
    idx = np.zeros(S.shape[0], dtype=np.int64)
    for j in range(1, S.shape[1]):
        better = S[:, j] > best
        idx[better] = j
        np.maximum(best, S[:, j], out=best)
    return idx, best


def missing_rank(P: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank of each class not in ``labels`` by probability (0 = most probable, ties: lower index);
    classes in ``labels`` rank after all others."""
    order = np.argsort(np.where(labels, np.inf, -P), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(P.shape[1]), order.shape), axis=1)
    return rank


def check_min_labels(min_labels) -> int:
    if not isinstance(min_labels, int | np.integer) or isinstance(min_labels, bool) or min_labels < 0:
        raise ConfigError(f"min_labels must be a non-negative integer, got {min_labels!r}")
    return int(min_labels)


# ---- the untuned decision as an estimator ------------------------------------------------------


class DefaultDecision:
    """The untuned decision, with the interface of :class:`ThresholdOptimizer`: ``p >= 0.5`` per
    class (multilabel, binary; then ``min_labels``), plain argmax (multiclass). The decision of a
    run scored by a probability metric, which has no thresholds to tune.

    After ``fit(P, Y)``: ``thresholds_`` ``(n_classes,)`` (0.5, or zero offsets), ``method_``.
    """

    metric = None  # tuned for no metric

    def __init__(self, task: str = "multilabel", min_labels: int = 0):
        self.task = task
        self.min_labels = min_labels

    def fit(self, P, Y=None) -> DefaultDecision:
        """``P`` ``(n_samples, n_classes)``; ``Y`` is not used."""
        task = check_task(self.task)
        check_min_labels(self.min_labels)
        n_classes = 1 if task == "binary" and np.ndim(P) == 1 else np.shape(P)[1]
        self.thresholds_ = default_thresholds(task, n_classes)
        self.method_ = (
            "argmax"
            if task == "multiclass"
            else f"p >= {DEFAULT_THRESHOLD}"
            + (f" with min_labels={self.min_labels}" if self.min_labels and task == "multilabel" else "")
        )
        return self

    def transform(self, P) -> np.ndarray:
        """Labels ``(n_samples, n_classes)`` int."""
        if not hasattr(self, "thresholds_"):
            raise RuntimeError("DefaultDecision is not fitted; call fit(P) first")
        return apply_thresholds(P, self.thresholds_, self.task, self.min_labels)
