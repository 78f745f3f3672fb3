"""The threshold search's building blocks: where a cut's threshold goes, the exact per-class
search, and one coordinate step (the best cut of one class with the others fixed).

:mod:`comp.thresholds` explains the searches and drives them; every function here works on
validated arrays (``P`` float64, ``Y`` bool, both ``(n_samples, n_classes)``, Fortran order).
"""

from __future__ import annotations

import numpy as np

from comp.decision import DEFAULT_THRESHOLD, missing_rank
from comp.errors import ConfigError
from comp.metrics import (
    Metric,
    check_labels,
    check_metric_task,
    check_proba,
    count_stats,
    row_stats,
    safe_div,
)

TOL = 1e-12  # a coordinate step must beat the current score by more than float noise


# ---- where a cut's threshold goes ------------------------------------------------------------


def all_threshold(lowest: float) -> float:
    return min(0.0, float(lowest))


def none_threshold(highest) -> np.ndarray | float:
    return np.nextafter(np.maximum(1.0, highest), np.inf)


def _midpoints(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    mid = 0.5 * (lo + hi)
    # adjacent floats: the midpoint rounds onto lo, which would keep lo's rows too
    return np.where(mid > lo, mid, hi)


def prefer(taus: np.ndarray, neutral: float) -> int:
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
        return float(none_threshold(v[-1])), 0.0
    if n_pos == n:
        return all_threshold(v[0]), 1.0
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
    taus = np.where(ties == 0, all_threshold(v[0]), _midpoints(v[np.maximum(ties - 1, 0)], v[ties]))
    return float(taus[prefer(taus, DEFAULT_THRESHOLD)]), float(best)


def exact_all(P: np.ndarray, Y: np.ndarray, objective: str) -> tuple[np.ndarray, np.ndarray]:
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
    return exact_all(P, Y, objective)


# ---- one coordinate step: the best cut of one class, the others fixed ----------------------------


def best_cut(
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
        first, none, neutral = all_threshold(k[-1]), float(none_threshold(k[0])), DEFAULT_THRESHOLD
    else:
        first, none, neutral = k[-1] - 1.0, k[0] + 1.0, 0.0
    inner = cuts[1:-1]
    taus = np.concatenate(([none], _midpoints(k[inner], k[inner - 1]), [first]))
    scores = scores[cuts]
    ties = np.flatnonzero(scores >= scores.max() - TOL)
    j = ties[prefer(taus[ties], neutral)]
    return float(scores[j]), float(taus[j])


def _cumsum0(x: np.ndarray) -> np.ndarray:
    """``[0, x0, x0 + x1, ...]``: the running total after switching on 0, 1, ... rows."""
    out = np.zeros(x.size + 1, dtype=np.float64 if x.dtype.kind == "f" else np.int64)
    np.cumsum(x, out=out[1:])
    return out


def _count_scores(metric, task, Yw, base, c, yc, bm, has, yb) -> np.ndarray:
    """A count metric after switching on the first r rows, r = 0..m (see ``best_cut``)."""
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


def multilabel_state(P, raw, c, k, top):
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
                rank = missing_rank(P[short], base[short])
                picked = rank < need[:, None]
                base[short] |= picked
                has_c = picked[:, c]
                last = np.argmax(rank == (need - 1)[:, None], axis=1)
            movable[short[has_c]] = False
            b[short[~has_c]] = last[~has_c]
    return base, movable, b
