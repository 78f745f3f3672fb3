"""Decision thresholds fitted on out-of-fold probabilities.

Arrays are ``(n_samples, n_classes)`` as everywhere in comp (binary: one positive column).

Rule: multilabel and binary tasks predict a class when its probability is at least its threshold
(``p >= t``); multiclass tasks predict ``argmax(P + offsets)``.

How each case is searched:

- **Exact per-class search** (multilabel ``f1_macro``, ``f1_weighted``, ``precision_macro``,
  ``recall_macro``: each is a fixed-weight sum of per-class scores, so the classes separate). Each
  class's probabilities are sorted once, together with their labels, and every distinct cut point is
  scored from cumulative TP/FP counts: O(n log n) per class, no grid, the exact optimum.
- **Binary**: the same scan over every cut of the one column, scored on the real metric.
- **Other multilabel metrics** (``f1_micro``, ``f1_samples``, ``jaccard_samples``, ``accuracy``, ...):
  the best single threshold for all classes (grid 0.01..0.99 plus 63 quantiles of the probabilities),
  then coordinate ascent: each class in turn gets the best cut of its own probabilities with the other
  thresholds fixed, on the real metric, in passes until a pass improves nothing (``max_passes``).
  A coordinate step scores every distinct cut point of the class exactly, from running sums of
  sufficient statistics (per-class counts or per-row intersections, see ``comp.metrics``) over the
  rows in the order the cut takes them: O(n log n) per step.
- **Multiclass**: plain argmax (``thresholds_`` = zeros). With ``class_offsets=True``, per-class
  additive offsets are tuned by the same coordinate ascent: raising class c's offset moves rows to c
  in the order of their margin ``P[:, c] - max_other(P + offsets)``. ``thresholds_`` holds the offsets.
  If the tuned offsets ever score below plain argmax in-sample, they are reset to zero.

Where the threshold goes: between the lowest probability the best cut keeps and the next lower
distinct probability, at their midpoint, so new data near the boundary is split evenly rather than
on one fitted value. A cut that keeps every row gets ``min(0, min p)`` and one that keeps none gets
the next float above ``max(1, max p)``.

Ties between cuts of equal score: the threshold closest to 0.5 (for offsets: closest to 0) wins,
then the higher one. Deterministic, and it stays near the untuned default when the data can't tell.

Classes that are all 0 in the fitting rows get a threshold that predicts none, all 1 one that
predicts every row; such a class is left out of the search (for every label metric its constant
prediction is at least as good as any other).

``min_labels=k`` (multilabel only): rows with fewer than k predicted labels get their most probable
missing classes (ties: lower class index). The coordinate ascent scores with it applied; the
per-class exact search is followed by coordinate ascent passes when it is set.
"""

from __future__ import annotations

import numpy as np

from comp.errors import ConfigError, DataError
from comp.metrics import (
    Metric,
    check_labels,
    check_metric_task,
    check_proba,
    check_task,
    count_stats,
    expand_binary,
    get_metric,
    row_stats,
    safe_div,
    score,
    stats_score,
)

DEFAULT_THRESHOLD = 0.5
_TOL = 1e-12  # a coordinate step must beat the current score by more than float noise
# multilabel metrics that are fixed-weight sums of per-class scores -> per-class objective
_SEPARABLE = {"f1_macro": "f1", "f1_weighted": "f1", "precision_macro": "precision", "recall_macro": "recall"}
_OBJECTIVE_NAMES = {"f1": "F1", "precision": "precision", "recall": "recall"}
_GLOBAL_GRID = np.arange(1, 100) / 100.0


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
    return _apply(P, t, task, _check_min_labels(min_labels)).astype(np.int64)


def _apply(
    P: np.ndarray, t: np.ndarray, task: str, min_labels: int, top: np.ndarray | None = None
) -> np.ndarray:
    """Boolean labels; ``top`` (n,): each row's argmax, if already known."""
    if task == "multiclass":
        labels = np.zeros(P.shape, dtype=bool, order="F")
        labels[np.arange(P.shape[0]), _row_argmax(P + t)[0]] = True
        return labels
    labels = P >= t
    if task == "multilabel" and min_labels > 0:
        k = min(min_labels, P.shape[1])
        count = np.count_nonzero(labels, axis=1)
        short = np.flatnonzero(count < k)
        if short.size and k == 1:  # the common case, without sorting rows
            labels[short, np.argmax(P[short], axis=1) if top is None else top[short]] = True
        elif short.size:
            rank = _missing_rank(P[short], labels[short])
            labels[short] |= rank < (k - count[short])[:, None]
    return labels


def _row_argmax(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(argmax, max)`` of ``S`` (n, C), ties to the lower column like ``np.argmax``; a
    loop over columns, several times faster than ``argmax(axis=1)`` for few columns."""
    best = S[:, 0].copy()
    idx = np.zeros(S.shape[0], dtype=np.int64)
    for j in range(1, S.shape[1]):
        better = S[:, j] > best
        idx[better] = j
        np.maximum(best, S[:, j], out=best)
    return idx, best


def _missing_rank(P: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rank of each class not in ``labels`` by probability (0 = most probable, ties: lower index);
    classes in ``labels`` rank after all others."""
    order = np.argsort(np.where(labels, np.inf, -P), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(P.shape[1]), order.shape), axis=1)
    return rank


def _check_min_labels(min_labels) -> int:
    if not isinstance(min_labels, int | np.integer) or isinstance(min_labels, bool) or min_labels < 0:
        raise ConfigError(f"min_labels must be a non-negative integer, got {min_labels!r}")
    return int(min_labels)


# ---- where a cut's threshold goes ------------------------------------------------------------


def _all_threshold(lowest: float) -> float:
    return min(0.0, float(lowest))


def _none_threshold(highest) -> np.ndarray | float:
    return np.nextafter(np.maximum(1.0, highest), np.inf)


def _midpoints(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    mid = 0.5 * (lo + hi)
    # adjacent floats: the midpoint rounds onto lo, which would keep lo's rows too
    return np.where(mid > lo, mid, hi)


def _prefer(taus: np.ndarray, neutral: float) -> int:
    """Index of the tied candidate closest to ``neutral``, then the highest."""
    return int(np.lexsort((-taus, np.abs(taus - neutral)))[0])


# ---- exact per-class search --------------------------------------------------------------------


_GROUP = 8  # classes whose sort keys are built together (8 x n int64 at a time)
_BLOCK = 8192  # rows per block when gathering columns: both sides of the copy stay in cache


def _sorted_columns(P: np.ndarray, Y: np.ndarray):
    """Yield ``(c, values, labels)`` per class: ``P[:, c]`` ascending and its 0/1 labels (int64)
    in the same order."""
    n, C = P.shape
    if not (P.min() >= 0.0 and P.max() < 2.0):
        for c in range(C):
            order = np.argsort(P[:, c], kind="stable")
            yield c, P[order, c] + 0.0, Y[order, c].astype(np.int64)
        return
    # The bits of a non-negative double sort like the double, and bit 62 is clear below 2.0, so
    # shifting left frees the lowest bit for the label: one int64 sort replaces an argsort and two
    # gathers (about 4x faster). The shift also drops the sign bit of -0.0. Columns are gathered in
    # row blocks, which reads P once instead of once per class.
    bits = P.view(np.int64)
    for c0 in range(0, C, _GROUP):
        cols = slice(c0, min(C, c0 + _GROUP))
        keys = np.empty((cols.stop - c0, n), dtype=np.int64)
        for i in range(0, n, _BLOCK):
            block = keys[:, i : i + _BLOCK]
            np.left_shift(bits[i : i + _BLOCK, cols].T, 1, out=block)
            block |= Y[i : i + _BLOCK, cols].T
        for j, key in enumerate(keys):
            key.sort()
            yield c0 + j, (key >> 1).view(np.float64), key & 1


def _exact_column(v: np.ndarray, ys: np.ndarray, objective: str) -> tuple[float, float]:
    """Best ``(threshold, score)`` of one class from its sorted values ``v`` and labels ``ys``."""
    n = v.size
    n_pos = int(np.count_nonzero(ys))
    if n_pos == 0:
        return float(_none_threshold(v[-1])), 0.0
    if n_pos == n:
        return _all_threshold(v[0]), 1.0
    # A cut keeps the rows from position `start` on (every p >= v[start]); starts are where a run
    # of equal values begins.
    if objective == "recall":
        # recall ties at 1 for every cut below the lowest positive: score every cut, so that the
        # tie rule sees them all
        starts = np.concatenate(([0], np.flatnonzero(v[1:] != v[:-1]) + 1))
        cum = np.cumsum(ys)
        tp = n_pos - np.concatenate(([0], cum[starts[1:] - 1]))
    else:
        # F1 and precision only rise when a cut drops a run without positives (fewer FP, same TP),
        # so the best cuts start at runs holding a positive: n_pos candidates instead of n.
        pos = np.flatnonzero(ys)
        if np.any(v[1:] == v[:-1]):
            starts = np.searchsorted(v, v[pos], side="left")
            tp = n_pos - np.searchsorted(pos, starts, side="left")
        else:
            starts = pos
            tp = np.arange(n_pos, 0, -1)
    kept = n - starts
    if objective == "f1":
        s = 2 * tp / (kept + n_pos)  # = 2TP / (2TP + FP + FN), as sklearn computes it
    elif objective == "precision":
        s = tp / kept
    else:
        s = tp / n_pos
    best = s.max()
    ties = starts[s == best]
    taus = np.where(ties == 0, _all_threshold(v[0]), _midpoints(v[np.maximum(ties - 1, 0)], v[ties]))
    return float(taus[_prefer(taus, DEFAULT_THRESHOLD)]), float(best)


def _exact_all(P: np.ndarray, Y: np.ndarray, objective: str) -> tuple[np.ndarray, np.ndarray]:
    thresholds = np.empty(Y.shape[1])
    best = np.empty(Y.shape[1])
    for c, v, ys in _sorted_columns(P, Y):
        thresholds[c], best[c] = _exact_column(v, ys, objective)
    return thresholds, best


def exact_thresholds(P, Y, objective: str = "f1") -> tuple[np.ndarray, np.ndarray]:
    """The exact best threshold of every class for its own F1 (or ``precision``, ``recall``).

    ``P`` probabilities and ``Y`` 0/1 labels, both ``(n_samples, n_classes)``. Returns thresholds
    ``(n_classes,)`` and the best per-class scores ``(n_classes,)``.
    """
    if objective not in ("f1", "precision", "recall"):
        raise ConfigError(f"objective '{objective}' is not one of f1, precision, recall")
    Y = check_labels(Y, "multilabel", "Y")
    P = check_proba(P, Y.shape, "multilabel")
    return _exact_all(P, Y, objective)


# ---- one coordinate step: the best cut of one class, the others fixed ----------------------------


def _best_cut(
    metric: Metric,
    task: str,
    Yw: np.ndarray,
    base: np.ndarray,
    c: int,
    key: np.ndarray,
    movable: np.ndarray,
    b: np.ndarray,
    kind: str,
) -> tuple[float, float]:
    """Best ``(score, tau)`` for switching class ``c`` on in the movable rows with ``key > tau``.

    ``base`` (n, C) bool: the labels with every movable row switched off. Switching row i on adds
    class c and removes class ``b[i]`` (-1: none; never c). ``kind``: "threshold" or "offset"
    (padding of the end cuts and the neutral value differ). Every distinct cut is scored exactly,
    from running sums over the rows in switching order: O(n log n), whatever the number of classes.
    """
    n = Yw.shape[0]
    rows = np.flatnonzero(movable)
    if rows.size == 0:
        return -np.inf, 0.0
    # the order in which a falling cut takes them (among equal keys any order: no cut falls there)
    rows = rows[np.argsort(-key[rows])]
    k = key[rows]
    m = rows.size
    yc = Yw[rows, c]
    bm = b[rows]
    has = bm >= 0
    yb = np.zeros(m, dtype=bool)
    yb[has] = Yw[rows[has], bm[has]]
    if metric.per_class is not None:
        scores = _count_scores(metric, task, Yw, base, c, yc, bm, has, yb)
    else:
        common, n_pred, n_true = row_stats(Yw, base)
        f_off = metric.from_rows(common, n_pred, n_true)
        f_on = metric.from_rows(common[rows] + yc - yb, n_pred[rows] + 1 - has, n_true[rows])
        scores = (f_off.sum() + _cumsum0(f_on - f_off[rows])) / n
    # cut r switches on the first r rows; only cuts between distinct keys can be thresholds
    cuts = np.concatenate(([0], 1 + np.flatnonzero(k[:-1] != k[1:]), [m]))
    if kind == "threshold":
        first, none, neutral = _all_threshold(k[-1]), float(_none_threshold(k[0])), DEFAULT_THRESHOLD
    else:
        first, none, neutral = k[-1] - 1.0, k[0] + 1.0, 0.0
    inner = cuts[1:-1]
    taus = np.concatenate(([none], _midpoints(k[inner], k[inner - 1]), [first]))
    scores = scores[cuts]
    ties = np.flatnonzero(scores >= scores.max() - _TOL)
    j = ties[_prefer(taus[ties], neutral)]
    return float(scores[j]), float(taus[j])


def _cumsum0(x: np.ndarray) -> np.ndarray:
    """``[0, x0, x0 + x1, ...]``: the running total after switching on 0, 1, ... rows."""
    out = np.zeros(x.size + 1, dtype=np.float64 if x.dtype.kind == "f" else np.int64)
    np.cumsum(x, out=out[1:])
    return out


def _count_scores(metric, task, Yw, base, c, yc, bm, has, yb) -> np.ndarray:
    """A count metric after switching on the first r rows, r = 0..m (see ``_best_cut``)."""
    g = metric.per_class
    tp0, fp0, support = count_stats(Yw, base)
    tp_c = tp0[c] + _cumsum0(yc.astype(np.int64))
    fp_c = fp0[c] + _cumsum0((~yc).astype(np.int64))
    if metric.average == "micro":
        lost_tp = _cumsum0((has & yb).astype(np.int64))
        lost_fp = _cumsum0((has & ~yb).astype(np.int64))
        TP = tp0.sum() - tp0[c] + tp_c - lost_tp
        FP = fp0.sum() - fp0[c] + fp_c - lost_fp
        return g(TP, FP, support.sum())
    if metric.average == "weighted":
        weights = support.astype(np.float64)
    elif metric.average == "positive":
        check_metric_task(metric.name, task)
        weights = np.zeros(support.size)
        weights[-1] = 1.0
    else:
        weights = np.ones(support.size)
    values0 = g(tp0, fp0, support) * weights
    total = values0.sum() - values0[c] + g(tp_c, fp_c, support[c]) * weights[c]
    present = (support + tp0 + fp0) > 0
    n_present = present.sum() - present[c] + ((support[c] + tp_c + fp_c) > 0)
    removed = np.flatnonzero(has)
    if removed.size:
        # Each removal changes one other class j; its counts after the q-th removal from j are the
        # base counts minus the running sums within j's removals (a grouped cumsum).
        order = np.argsort(bm[removed], kind="stable")
        at = removed[order]
        j = bm[at]
        yj = yb[at].astype(np.int64)
        run_tp = np.cumsum(yj)
        run_fp = np.cumsum(1 - yj)
        starts = np.flatnonzero(np.r_[True, j[1:] != j[:-1]])
        lengths = np.diff(np.r_[starts, j.size])
        run_tp -= np.repeat(run_tp[starts] - yj[starts], lengths)
        run_fp -= np.repeat(run_fp[starts] - (1 - yj[starts]), lengths)
        tp_after, fp_after = tp0[j] - run_tp, fp0[j] - run_fp
        tp_before, fp_before = tp_after + yj, fp_after + (1 - yj)
        delta = np.zeros(yc.size)
        delta[at] = (g(tp_after, fp_after, support[j]) - g(tp_before, fp_before, support[j])) * weights[j]
        total = total + _cumsum0(delta)
        gone = np.zeros(yc.size, dtype=np.int64)
        gone[at] = ((support[j] + tp_before + fp_before) > 0).astype(np.int64) - (
            (support[j] + tp_after + fp_after) > 0
        )
        n_present = n_present - _cumsum0(gone)
    if metric.average == "positive":
        return total
    if metric.average == "weighted":
        return safe_div(total, support.sum())
    if task == "multilabel":
        return total / support.size
    return safe_div(total, n_present)


def _multilabel_state(P, raw, c, k, top):
    """Labels with class c off, which rows class c's threshold moves, and what each row gives up."""
    n = P.shape[0]
    base = raw.copy(order="A")
    base[:, c] = False
    movable = np.ones(n, dtype=bool)
    b = np.full(n, -1, dtype=np.int64)
    if k > 0:
        count = np.count_nonzero(base, axis=1)
        short = np.flatnonzero(count < k)
        if short.size:
            # Topping up a short row with its m most probable missing classes: if c is among them,
            # the row has c whatever c's threshold; otherwise switching c on takes the place of the
            # m-th pick.
            need = k - count[short]
            if k == 1:  # empty rows: the pick is the row's argmax
                last = top[short]
                base[short, last] = True
                has_c = last == c
            else:
                rank = _missing_rank(P[short], base[short])
                picked = rank < need[:, None]
                base[short] |= picked
                has_c = picked[:, c]
                last = np.argmax(rank == (need - 1)[:, None], axis=1)
            movable[short[has_c]] = False
            b[short[~has_c]] = last[~has_c]
    return base, movable, b


# ---- the estimator -----------------------------------------------------------------------------


class ThresholdOptimizer:
    """Per-class thresholds (or multiclass offsets) that maximise a metric on given probabilities.

    Parameters: ``metric`` (a label metric of ``comp.metrics.METRICS``), ``task``, ``min_labels``
    (multilabel: every row gets at least this many labels), ``class_offsets`` (multiclass: tune
    additive per-class offsets instead of plain argmax), ``max_passes`` of coordinate ascent.

    After ``fit(P, Y)``: ``thresholds_`` ``(n_classes,)`` and ``score_`` (the in-sample metric with
    them applied), ``n_passes_`` (coordinate ascent passes run; 0 when none was needed) and
    ``method_``, the search it ran, in words (thresholds.json records it).
    """

    def __init__(
        self,
        metric: str = "f1_macro",
        task: str = "multilabel",
        min_labels: int = 0,
        class_offsets: bool = False,
        max_passes: int = 10,
    ):
        self.metric = metric
        self.task = task
        self.min_labels = min_labels
        self.class_offsets = class_offsets
        self.max_passes = max_passes

    def fit(self, P, Y) -> ThresholdOptimizer:
        """``P`` probabilities, ``Y`` 0/1 labels, both ``(n_samples, n_classes)``."""
        metric = get_metric(self.metric)
        task = check_task(self.task)
        k = _check_min_labels(self.min_labels)
        if metric.needs_proba:
            raise ConfigError(
                f"metric '{metric.name}' scores probabilities, so there are no thresholds to tune; "
                "submit the probabilities"
            )
        if self.class_offsets and task != "multiclass":
            raise ConfigError(
                f"class_offsets applies to multiclass tasks only; a {task} task tunes thresholds"
            )
        check_metric_task(metric.name, task)
        # Fortran order: the search reads whole columns, and counts per row and column run fastest
        Y = np.asfortranarray(check_labels(Y, task, "Y"))
        P = np.asfortranarray(check_proba(P, Y.shape, task))
        self.n_passes_ = 0
        self.method_ = ""
        if task == "multilabel":
            self.thresholds_ = self._fit_multilabel(P, Y, metric, min(k, Y.shape[1]))
        elif task == "binary":
            self.thresholds_ = self._fit_binary(P, Y, metric)
        else:
            self.thresholds_ = self._fit_multiclass(P, Y, metric)
        self.score_ = score(metric.name, Y, self.transform(P), task)
        return self

    def transform(self, P) -> np.ndarray:
        """Labels ``(n_samples, n_classes)`` int for probabilities ``P`` of the same classes."""
        if not hasattr(self, "thresholds_"):
            raise RuntimeError("ThresholdOptimizer is not fitted; call fit(P, Y) first")
        return apply_thresholds(P, self.thresholds_, self.task, self.min_labels)

    def fit_transform(self, P, Y) -> np.ndarray:
        return self.fit(P, Y).transform(P)

    # ---- per task ------------------------------------------------------------------------------
    def _fit_multilabel(self, P, Y, metric, k) -> np.ndarray:
        n, C = Y.shape
        n_pos = np.count_nonzero(Y, axis=0)
        top = _row_argmax(P)[0]  # what min_labels=1 gives an empty row
        objective = _SEPARABLE.get(metric.name)
        if objective is not None:
            t = _exact_all(P, Y, objective)[0]
            self.method_ = f"exact per-class {_OBJECTIVE_NAMES[objective]} search"
            if k == 0:
                return t
            self.method_ += f", then coordinate ascent with min_labels={k}"
        else:
            self.method_ = "best global threshold, then per-class coordinate ascent" + (
                f" with min_labels={k}" if k else ""
            )
            t = np.full(C, self._global_threshold(P, Y, metric, k, top))
            t[n_pos == 0] = _none_threshold(P.max(axis=0))[n_pos == 0]
            t[n_pos == n] = np.minimum(0.0, P.min(axis=0))[n_pos == n]
        classes = np.flatnonzero((n_pos > 0) & (n_pos < n))

        def real(t):
            return stats_score(metric, Y, _apply(P, t, "multilabel", k, top), "multilabel")

        def step(t, c):
            base, movable, b = _multilabel_state(P, P >= t, c, k, top)
            s, tau = _best_cut(metric, "multilabel", Y, base, c, P[:, c], movable, b, "threshold")
            return s, tau

        return self._ascend(t, classes, real, step)

    def _global_threshold(self, P, Y, metric, k, top) -> float:
        flat = P.ravel(order="K")
        if flat.size > 200_000:  # quantiles of a fixed random sample are plenty for a starting point
            flat = flat[np.random.default_rng(0).integers(0, flat.size, 200_000)]
        candidates = np.unique(np.concatenate([_GLOBAL_GRID, np.quantile(flat, np.linspace(0, 1, 65)[1:-1])]))
        C = P.shape[1]
        scores = np.array(
            [
                stats_score(metric, Y, _apply(P, np.full(C, t), "multilabel", k, top), "multilabel")
                for t in candidates
            ]
        )
        ties = candidates[scores >= scores.max() - _TOL]
        return float(ties[_prefer(ties, DEFAULT_THRESHOLD)])

    def _fit_binary(self, P, Y, metric) -> np.ndarray:
        p, y = P[:, 0], Y[:, 0]
        n_pos = np.count_nonzero(y)
        self.method_ = "exact search over every cut of the positive class"
        if n_pos == 0:
            return np.array([_none_threshold(p.max())])
        if n_pos == y.size:
            return np.array([_all_threshold(p.min())])
        Yw = np.asfortranarray(expand_binary(Y))
        base = np.zeros(Yw.shape, dtype=bool, order="F")
        base[:, 0] = True  # every row switched off is predicted negative
        movable = np.ones(y.size, dtype=bool)
        _, tau = _best_cut(metric, "binary", Yw, base, 1, p, movable, np.zeros(y.size, np.int64), "threshold")
        return np.array([tau])

    def _fit_multiclass(self, P, Y, metric) -> np.ndarray:
        n, C = Y.shape
        zeros = np.zeros(C)
        self.method_ = "argmax"
        if not self.class_offsets:
            return zeros

        def real(o):
            return stats_score(metric, Y, _apply(P, o, "multiclass", 0), "multiclass")

        def step(o, c):
            scores = P + o
            scores[:, c] = -np.inf
            b, best_other = _row_argmax(scores)
            base = np.zeros(Y.shape, dtype=bool, order="F")
            base[np.arange(n), b] = True
            key = P[:, c] - best_other
            s, tau = _best_cut(metric, "multiclass", Y, base, c, key, np.ones(n, bool), b, "offset")
            return s, -tau  # row i goes to c when P[i, c] + o_c > the best other, i.e. key > -o_c

        offsets = self._ascend(zeros.copy(), np.arange(C), real, step)
        if real(offsets) >= real(zeros):
            self.method_ = "argmax + class offsets"
            return offsets
        self.method_ = "argmax (tuned class offsets scored below argmax in-sample)"
        return zeros

    def _ascend(self, t, classes, real, step) -> np.ndarray:
        """Coordinate ascent: each class's best cut with the others fixed, until nothing improves."""
        current = real(t)
        for n_pass in range(1, self.max_passes + 1):
            self.n_passes_ = n_pass
            improved = False
            for c in classes:
                s, value = step(t, c)
                if s > current + _TOL:
                    old, t[c] = t[c], value
                    new = real(t)
                    if new > current:
                        current, improved = new, True
                    else:  # the step's estimate disagreed with the real metric: keep the old value
                        t[c] = old
            if not improved:
                break
        return t


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
        _check_min_labels(self.min_labels)
        n_classes = 1 if task == "binary" and np.ndim(P) == 1 else np.shape(P)[1]
        multiclass = task == "multiclass"
        self.thresholds_ = np.full(n_classes, 0.0 if multiclass else DEFAULT_THRESHOLD)
        self.method_ = "argmax" if multiclass else f"p >= {DEFAULT_THRESHOLD}" + (
            f" with min_labels={self.min_labels}" if self.min_labels and task == "multilabel" else ""
        )
        return self

    def transform(self, P) -> np.ndarray:
        """Labels ``(n_samples, n_classes)`` int."""
        if not hasattr(self, "thresholds_"):
            raise RuntimeError("DefaultDecision is not fitted; call fit(P) first")
        return apply_thresholds(P, self.thresholds_, self.task, self.min_labels)
