"""Decision thresholds fitted on out-of-fold probabilities: :class:`ThresholdOptimizer`.

Applying thresholds and the untuned default live in :mod:`comp.decision`, the search's building
blocks in :mod:`comp.threshold_search`; both are re-exported here.

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

from comp.decision import (
    DEFAULT_THRESHOLD,
    DefaultDecision,
    apply_thresholds,
    check_min_labels,
    decide,
    default_thresholds,
    row_argmax,
)
from comp.errors import ConfigError
from comp.metrics import (
    check_labels,
    check_metric_task,
    check_proba,
    check_task,
    expand_binary,
    get_metric,
    score,
    stats_score,
)
from comp.threshold_search import (
    TOL,
    all_threshold,
    best_cut,
    exact_all,
    exact_thresholds,
    multilabel_state,
    none_threshold,
    prefer,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "DefaultDecision",
    "ThresholdOptimizer",
    "apply_thresholds",
    "default_thresholds",
    "exact_thresholds",
]

# multilabel metrics that are fixed-weight sums of per-class scores -> per-class objective
_SEPARABLE = {"f1_macro": "f1", "f1_weighted": "f1", "precision_macro": "precision", "recall_macro": "recall"}
_OBJECTIVE_NAMES = {"f1": "F1", "precision": "precision", "recall": "recall"}
_GLOBAL_GRID = np.arange(1, 100) / 100.0


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
        k = check_min_labels(self.min_labels)
        if metric.needs_proba:
            raise ConfigError(
                f"metric '{metric.name}' scores probabilities, so there are no thresholds to tune; "
                "submit the probabilities"
            )
        if self.class_offsets and task != "multiclass":
            raise ConfigError(f"class_offsets applies to multiclass tasks only; a {task} task tunes thresholds")
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
        top = row_argmax(P)[0]  # what min_labels=1 gives an empty row
        objective = _SEPARABLE.get(metric.name)
        if objective is not None:
            t = exact_all(P, Y, objective)[0]
            self.method_ = f"exact per-class {_OBJECTIVE_NAMES[objective]} search"
            if k == 0:
                return t
            self.method_ += f", then coordinate ascent with min_labels={k}"
        else:
            self.method_ = "best global threshold, then per-class coordinate ascent" + (
                f" with min_labels={k}" if k else ""
            )
            t = np.full(C, self._global_threshold(P, Y, metric, k, top))
            t[n_pos == 0] = none_threshold(P.max(axis=0))[n_pos == 0]
            t[n_pos == n] = np.minimum(0.0, P.min(axis=0))[n_pos == n]
        classes = np.flatnonzero((n_pos > 0) & (n_pos < n))

        def real(t):
            return stats_score(metric, Y, decide(P, t, "multilabel", k, top), "multilabel")

        def step(t, c):
            base, movable, b = multilabel_state(P, P >= t, c, k, top)
            s, tau = best_cut(metric, "multilabel", Y, base, c, P[:, c], movable, b, "threshold")
            return s, tau

        return self._ascend(t, classes, real, step)

    def _global_threshold(self, P, Y, metric, k, top) -> float:
        flat = P.ravel(order="K")
        if flat.size > 200_000:  # quantiles of a fixed random sample are plenty for a starting point
            flat = flat[np.random.default_rng(0).integers(0, flat.size, 200_000)]
        candidates = np.unique(np.concatenate([_GLOBAL_GRID, np.quantile(flat, np.linspace(0, 1, 65)[1:-1])]))
        C = P.shape[1]
        scores = np.array(
            [stats_score(metric, Y, decide(P, np.full(C, t), "multilabel", k, top), "multilabel") for t in candidates]
        )
        ties = candidates[scores >= scores.max() - TOL]
        return float(ties[prefer(ties, DEFAULT_THRESHOLD)])

    def _fit_binary(self, P, Y, metric) -> np.ndarray:
        p, y = P[:, 0], Y[:, 0]
        n_pos = np.count_nonzero(y)
        self.method_ = "exact search over every cut of the positive class"
        if n_pos == 0:
            return np.array([none_threshold(p.max())])
        if n_pos == y.size:
            return np.array([all_threshold(p.min())])
        Yw = np.asfortranarray(expand_binary(Y))
        base = np.zeros(Yw.shape, dtype=bool, order="F")
        base[:, 0] = True  # every row switched off is predicted negative
        movable = np.ones(y.size, dtype=bool)
        _, tau = best_cut(metric, "binary", Yw, base, 1, p, movable, np.zeros(y.size, np.int64), "threshold")
        return np.array([tau])

    def _fit_multiclass(self, P, Y, metric) -> np.ndarray:
        n, C = Y.shape
        zeros = np.zeros(C)
        self.method_ = "argmax"
        if not self.class_offsets:
            return zeros

        def real(o):
            return stats_score(metric, Y, decide(P, o, "multiclass", 0), "multiclass")

        def step(o, c):
            scores = P + o
            scores[:, c] = -np.inf
            b, best_other = row_argmax(scores)
            base = np.zeros(Y.shape, dtype=bool, order="F")
            base[np.arange(n), b] = True
            key = P[:, c] - best_other
            s, tau = best_cut(metric, "multiclass", Y, base, c, key, np.ones(n, bool), b, "offset")
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
                if s > current + TOL:
                    old, t[c] = t[c], value
                    new = real(t)
                    if new > current:
                        current, improved = new, True
                    else:  # the step's estimate disagreed with the real metric: keep the old value
                        t[c] = old
            if not improved:
                break
        return t
