"""Competition metrics by name.

Every task uses indicator matrices of shape ``(n_samples, n_classes)``: multilabel 0/1 per class,
multiclass one-hot, binary a single column for the positive class. Label metrics take a 0/1 matrix
of predicted labels; probability metrics (``needs_proba``) take probabilities of the same shape.

Conventions (each matches scikit-learn with the setting named, and the tests check it):

- Division by zero gives 0 for per-class precision, recall and F1, as sklearn's default
  ``zero_division="warn"`` does (without the warning). A class with no true and no predicted
  positives therefore scores F1 = 0 and still counts in a multilabel macro average.
- Macro averages run over every column for multilabel, and over the classes present in the true or
  the predicted labels for multiclass and binary, as sklearn does when it is given label vectors.
- Binary tasks are scored like sklearn scores label vectors ``y in {0, 1}``: ``f1_macro``,
  ``recall_macro`` and friends average over both classes, ``f1_micro`` equals accuracy, ``f1`` is
  the F1 of the positive class (sklearn's ``average="binary"``).
- ``f1_samples`` and ``jaccard_samples`` score a row with no true and no predicted labels as 1 (a
  perfect prediction of "no label"), i.e. sklearn's ``zero_division=1``; sklearn's default would
  give 0. ``jaccard_samples`` is the SemEval-2018 E-c "accuracy". For multiclass and binary tasks
  both equal accuracy (one true and one predicted class per row).
- ``roc_auc_macro`` is sklearn's ``roc_auc_score`` per class, averaged over the classes whose true
  labels are not all equal (AUC is undefined there); it is NaN when no class has both labels.
- ``log_loss`` equals sklearn's ``log_loss`` (probabilities clipped to ``[eps, 1 - eps]``, float64 eps) and is
  computed here, several times faster (see its docstring).
  Multilabel and binary: mean binary cross-entropy over rows and classes; multiclass: categorical
  cross-entropy of the true class.

The label metrics are computed here from counts rather than by sklearn's ``f1_score`` and friends:
the threshold search scores thousands of candidate cuts from running sums of the same counts
(``Metric.from_counts``, ``Metric.from_rows``), exactly and about two orders of magnitude faster
than calling sklearn per cut. The tests check every one against sklearn.

The threshold search (``comp.thresholds``) evaluates label metrics from sufficient statistics:
per-class counts (``Metric.from_counts``) or per-row intersection sizes (``Metric.from_rows``).
Inside it, binary matrices are expanded to two columns ``[negative, positive]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from comp.errors import ConfigError, DataError

TASKS = ("multilabel", "multiclass", "binary")


@dataclass(frozen=True)
class Metric:
    """A metric by name. ``fn(Y_true, Y_pred_or_P, task) -> float`` expects validated inputs;
    call :func:`score` to validate and score in one go.

    Label metrics also come as sufficient statistics, for the threshold search: count metrics as a
    per-class score ``per_class(tp, fp, support)`` (elementwise) combined by ``average`` ("macro",
    "weighted", "micro": the per-class score of the summed counts, "positive": the last column);
    row metrics as a per-row score ``from_rows(n_common, n_pred, n_true)`` whose mean is the metric.
    """

    name: str
    fn: Callable[[np.ndarray, np.ndarray, str], float]
    needs_proba: bool
    greater_is_better: bool = True
    description: str = ""
    per_class: Callable[..., np.ndarray] | None = None
    average: str | None = None
    from_rows: Callable[..., np.ndarray] | None = None

    def from_counts(self, tp, fp, support, task: str) -> np.ndarray:
        """The metric from per-class counts of shape ``(..., n_classes)``; returns shape ``(...)``."""
        g = self.per_class
        if self.average == "micro":
            return g(np.sum(tp, axis=-1), np.sum(fp, axis=-1), np.sum(support, axis=-1))
        if self.average == "positive":
            check_metric_task(self.name, task)
            return g(tp[..., -1], fp[..., -1], np.asarray(support)[..., -1])
        values = g(tp, fp, support)
        if self.average == "weighted":
            # classes without support weigh 0; with no support at all every score is 0, so is the mean
            return safe_div(np.sum(values * support, axis=-1), np.sum(support, axis=-1))
        present = _present(tp, fp, support, task)
        return safe_div(np.sum(values * present, axis=-1), np.sum(present, axis=-1))


# ---- input checks ------------------------------------------------------------------------------


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ConfigError(f"task '{task}' is not one of {', '.join(TASKS)}")
    return task


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(f"metric '{name}' is unknown; choose one of {', '.join(METRICS)}") from None


def check_labels(Y, task: str, what: str = "Y_true") -> np.ndarray:
    """``Y`` as a boolean ``(n_samples, n_classes)`` matrix; a 1-D binary vector becomes one column."""
    Y = np.asarray(Y)
    if task == "binary" and Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    if Y.ndim != 2 or Y.shape[0] == 0 or Y.shape[1] == 0:
        raise DataError(f"{what} must be a non-empty (n_samples, n_classes) matrix, got shape {Y.shape}")
    if Y.dtype != bool:
        if not np.issubdtype(Y.dtype, np.number):
            raise DataError(f"{what} must be a 0/1 indicator matrix, got dtype {Y.dtype}")
        bad = ~((Y == 0) | (Y == 1))
        if bad.any():
            raise DataError(f"{what} must hold only 0 and 1 (an indicator matrix); found {Y[bad].flat[0].item()!r}")
        Y = Y.astype(bool)
    if task == "binary" and Y.shape[1] != 1:
        raise DataError(f"{what} of a binary task must have one column (the positive class), got {Y.shape[1]}")
    if task == "multiclass":
        bad = np.flatnonzero(np.count_nonzero(Y, axis=1) != 1)
        if bad.size:
            raise DataError(
                f"{what} of a multiclass task must be one-hot; row {bad[0]} has {np.count_nonzero(Y[bad[0]])} ones"
            )
    return Y


def check_proba(P, shape: tuple[int, ...], task: str, what: str = "probabilities") -> np.ndarray:
    """``P`` as float64 of ``shape``; a 1-D binary vector becomes one column."""
    P = np.asarray(P)
    if task == "binary" and P.ndim == 1:
        P = P.reshape(-1, 1)
    if P.shape != tuple(shape):
        raise DataError(f"{what} have shape {P.shape} but the labels have shape {tuple(shape)}; they must match")
    if not np.issubdtype(P.dtype, np.number) or np.issubdtype(P.dtype, np.complexfloating):
        raise DataError(f"{what} must be numeric, got dtype {P.dtype}")
    P = P.astype(np.float64, copy=False)
    if not np.isfinite(P).all():
        raise DataError(f"{what} contain NaN or infinite values; fix the model output before scoring")
    return P


def expand_binary(Y: np.ndarray) -> np.ndarray:
    """``(n, 1)`` positive-class indicators -> ``(n, 2)`` columns ``[negative, positive]``."""
    return np.concatenate([~Y, Y], axis=1)


# ---- sufficient statistics ---------------------------------------------------------------------


def _column_counts(A: np.ndarray) -> np.ndarray:
    if A.flags.f_contiguous:  # contiguous columns: a count per column is ~30x faster than axis=0
        return np.array([np.count_nonzero(A[:, j]) for j in range(A.shape[1])], dtype=np.int64)
    return np.count_nonzero(A, axis=0).astype(np.int64)


def _row_counts(A: np.ndarray) -> np.ndarray:
    if A.shape[1] < 256:  # summing bytes into a byte is ~10x faster than count_nonzero(axis=1)
        return A.view(np.uint8).sum(axis=1, dtype=np.uint8).astype(np.int64)
    return np.count_nonzero(A, axis=1).astype(np.int64)


def count_stats(Y_true: np.ndarray, Y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class ``(tp, fp, support)``, each ``(n_classes,)`` int64, from boolean matrices
    (fastest in Fortran order, as the threshold search keeps them)."""
    tp = _column_counts(Y_true & Y_pred)
    return tp, _column_counts(Y_pred) - tp, _column_counts(Y_true)


def row_stats(Y_true: np.ndarray, Y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row ``(n_common, n_pred, n_true)``, each ``(n_samples,)`` int64, from boolean matrices."""
    return _row_counts(Y_true & Y_pred), _row_counts(Y_pred), _row_counts(Y_true)


def stats_score(metric: Metric, Y_true: np.ndarray, Y_pred: np.ndarray, task: str) -> float:
    """A label metric on boolean matrices; binary matrices must already be expanded to two columns."""
    if metric.per_class is not None:
        return float(metric.from_counts(*count_stats(Y_true, Y_pred), task))
    return float(np.mean(metric.from_rows(*row_stats(Y_true, Y_pred))))


def safe_div(num, den, zero: float = 0.0) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast_shapes(num.shape, den.shape), zero)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _present(tp, fp, support, task: str) -> np.ndarray:
    # sklearn averages label vectors over the labels present in y_true or y_pred
    if task == "multilabel":
        return np.ones(np.shape(tp), dtype=bool)
    return (np.asarray(support) + tp + fp) > 0


def check_metric_task(name: str, task: str) -> None:
    """Raise when metric ``name`` has no meaning for ``task``."""
    if name == "f1" and task != "binary":
        raise ConfigError(
            f"metric 'f1' is the positive-class F1 of a binary task, not of a {task} task; use f1_macro or f1_micro"
        )


def f1_per_class(tp, fp, support) -> np.ndarray:
    return safe_div(2 * tp, tp + fp + support)  # = 2TP / (2TP + FP + FN), as sklearn computes it


def precision_per_class(tp, fp, support) -> np.ndarray:
    return safe_div(tp, tp + fp)


def recall_per_class(tp, fp, support) -> np.ndarray:
    return safe_div(tp, support)


def _f1_row(common, n_pred, n_true):
    return safe_div(2 * common, n_pred + n_true, zero=1.0)


def _jaccard_row(common, n_pred, n_true):
    return safe_div(common, n_pred + n_true - common, zero=1.0)


def _exact_row(common, n_pred, n_true):
    return ((common == n_pred) & (common == n_true)).astype(np.float64)


# ---- metric functions on validated inputs ------------------------------------------------------


def _internal(Y: np.ndarray, task: str) -> np.ndarray:
    return expand_binary(Y) if task == "binary" else Y


def _counts_metric(name):
    def fn(Y_true, Y_pred, task):
        tp, fp, support = count_stats(_internal(Y_true, task), _internal(Y_pred, task))
        return float(METRICS[name].from_counts(tp, fp, support, task))

    return fn


def _rows_metric(from_rows):
    def fn(Y_true, Y_pred, task):
        return float(np.mean(from_rows(*row_stats(_internal(Y_true, task), _internal(Y_pred, task)))))

    return fn


def roc_auc_macro(Y_true: np.ndarray, P: np.ndarray, task: str) -> float:
    """Mean one-vs-rest ROC AUC over classes (sklearn's ``roc_auc_score`` per column); classes whose
    true labels are all equal are skipped (their AUC is undefined). NaN when no class has both labels."""

    n_pos = np.count_nonzero(Y_true, axis=0)
    keep = np.flatnonzero((n_pos > 0) & (n_pos < Y_true.shape[0]))
    if keep.size == 0:
        return float("nan")
    return float(np.mean([roc_auc_score(Y_true[:, c], P[:, c]) for c in keep]))


def log_loss(Y_true: np.ndarray, P: np.ndarray, task: str) -> float:
    """Binary cross-entropy averaged over rows and classes (multilabel, binary) or categorical
    cross-entropy of the true class (multiclass); probabilities clipped to [eps, 1 - eps] with float64
    eps, as sklearn's ``log_loss`` does for float64 input.

    Written here rather than calling sklearn's ``log_loss``: the values are identical (tests/test_metrics.py)
    but sklearn's input validation makes a call several times slower (bench/bench_metrics.py), and the
    weighted blend scores the metric once per candidate member per step."""
    eps = np.finfo(np.float64).eps
    P = np.clip(P, eps, 1 - eps)
    if task == "multiclass":
        return float(-np.mean(np.log(P[Y_true.astype(bool)])))
    return float(-np.mean(np.where(Y_true, np.log(P), np.log1p(-P))))


def _counts(name, per_class, average, description):
    return Metric(name, _counts_metric(name), False, True, description, per_class=per_class, average=average)


def _rows(name, from_rows, description):
    return Metric(name, _rows_metric(from_rows), False, True, description, from_rows=from_rows)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        _counts("f1_macro", f1_per_class, "macro", "mean of per-class F1"),
        _counts("f1_micro", f1_per_class, "micro", "F1 of the pooled counts of all classes"),
        _counts("f1_weighted", f1_per_class, "weighted", "per-class F1 weighted by support"),
        _rows("f1_samples", _f1_row, "mean per-row F1 (empty vs empty = 1)"),
        _rows(
            "jaccard_samples",
            _jaccard_row,
            "mean per-row |pred & true| / |pred | true| (empty vs empty = 1); SemEval E-c accuracy",
        ),
        _rows("accuracy", _exact_row, "share of rows whose label set is exactly right"),
        _counts("recall_macro", recall_per_class, "macro", "mean of per-class recall (TweetEval sentiment)"),
        _counts("precision_macro", precision_per_class, "macro", "mean of per-class precision"),
        _counts("f1", f1_per_class, "positive", "F1 of the positive class (binary tasks only)"),
        Metric(
            "roc_auc_macro",
            roc_auc_macro,
            True,
            True,
            "mean one-vs-rest ROC AUC over classes that have both labels",
        ),
        Metric("log_loss", log_loss, True, False, "cross-entropy of the probabilities (lower is better)"),
    )
}


def score(name: str, Y_true, Y_pred_or_P, task: str) -> float:
    """Metric ``name`` of predictions against ``Y_true`` (both ``(n_samples, n_classes)``).

    Label metrics take 0/1 predicted labels, ``needs_proba`` metrics take probabilities.
    """
    metric = get_metric(name)
    check_task(task)
    check_metric_task(name, task)
    Y_true = check_labels(Y_true, task, "Y_true")
    if metric.needs_proba:
        pred = check_proba(Y_pred_or_P, Y_true.shape, task)
    else:
        pred = check_labels(Y_pred_or_P, task, "predicted labels")
        if pred.shape != Y_true.shape:
            raise DataError(
                f"predicted labels have shape {pred.shape} but Y_true has shape {Y_true.shape}; they must match"
            )
    return metric.fn(Y_true, pred, task)


def per_class(Y_true, Y_pred) -> dict[str, np.ndarray]:
    """Per-column ``support``, ``n_predicted`` (int) and ``precision``, ``recall``, ``f1`` (float),
    each ``(n_classes,)``; zero division gives 0. A binary matrix reports its positive column."""
    Y_true = check_labels(Y_true, "multilabel", "Y_true")
    Y_pred = check_labels(Y_pred, "multilabel", "predicted labels")
    if Y_pred.shape != Y_true.shape:
        raise DataError(
            f"predicted labels have shape {Y_pred.shape} but Y_true has shape {Y_true.shape}; they must match"
        )
    tp, fp, support = count_stats(Y_true, Y_pred)
    return {
        "support": support,
        "n_predicted": tp + fp,
        "precision": safe_div(tp, tp + fp),
        "recall": safe_div(tp, support),
        "f1": f1_per_class(tp, fp, support),
    }
