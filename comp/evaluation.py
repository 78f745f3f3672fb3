"""Score OOF probabilities the three ways every run reports: at 0.5, with thresholds tuned on the
whole OOF, and honestly (thresholds fitted on the other folds, applied to each held-out fold).
Used by `train`, `ensemble` and `thresholds`, so every run's scores.json means the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from comp.metrics import METRICS, score
from comp.thresholds import ThresholdOptimizer, apply_thresholds, honest_estimate


@dataclass
class OofScores:
    metric: str
    at_05: float
    tuned: float
    honest: float
    per_fold: list[dict[str, Any]]
    thresholds: np.ndarray  # (n_outputs,) thresholds, or offsets for multiclass
    method: str

    @property
    def optimism(self) -> float:
        """How much tuning thresholds on the OOF flatters the CV score."""
        return self.tuned - self.honest

    def scores_json(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "cv": {"at_0.5": self.at_05, "tuned": self.tuned, "honest": self.honest},
            "per_fold": self.per_fold,
            **(extra or {}),
        }

    def thresholds_json(self, classes: list[str], task: str, min_labels: int) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "task": task,
            "method": self.method,
            "min_labels": min_labels,
            "thresholds": {c: float(t) for c, t in zip(classes, self.thresholds, strict=True)},
        }


def threshold_values(record: dict[str, Any], classes: list[str]) -> np.ndarray:
    """thresholds.json's values in ``classes`` order, NaN where none was tuned (probability metrics)."""
    from comp.errors import RunError

    values = record.get("thresholds") or {}
    missing = [c for c in classes if c not in values]
    if missing:
        raise RunError(f"thresholds.json has no threshold for class(es) {', '.join(missing[:5])}; "
                       "re-fit them with `comp thresholds RUN`")
    return np.array([np.nan if values[c] is None else float(values[c]) for c in classes])


def optimizer_for(metric: str, task: str, min_labels: int, class_offsets: bool = False) -> ThresholdOptimizer:
    return ThresholdOptimizer(metric=metric, task=task, min_labels=min_labels, class_offsets=class_offsets)


def evaluate_oof(P: np.ndarray, Y: np.ndarray, folds: np.ndarray, task: str, metric: str,
                 min_labels: int = 0, class_offsets: bool = False) -> OofScores:
    """P, Y: (n_samples, n_outputs); folds: (n_samples,) fold index of each OOF row."""
    n_folds = int(folds.max()) + 1
    if METRICS[metric].needs_proba:
        # probability metrics are threshold-free: the three estimates coincide
        overall = score(metric, Y, P, task)
        per_fold = [{"fold": k, "rows": int((folds == k).sum()), "at_0.5": _safe(metric, Y, P, task, folds == k)}
                    for k in range(n_folds)]
        for row in per_fold:
            row["tuned"] = row["honest"] = row["at_0.5"]
        return OofScores(metric, overall, overall, overall, per_fold, np.full(Y.shape[1], np.nan), "none (probability metric)")

    half = np.zeros(Y.shape[1]) if task == "multiclass" else np.full(Y.shape[1], 0.5)
    labels_05 = apply_thresholds(P, half, task, min_labels)
    optimizer = optimizer_for(metric, task, min_labels, class_offsets).fit(P, Y)
    labels_tuned = optimizer.transform(P)
    honest = honest_estimate(P, Y, folds, metric=metric, task=task, min_labels=min_labels, class_offsets=class_offsets)
    per_fold = []
    for k in range(n_folds):
        rows = folds == k
        per_fold.append({
            "fold": k,
            "rows": int(rows.sum()),
            "at_0.5": _safe(metric, Y, labels_05, task, rows),
            "tuned": _safe(metric, Y, labels_tuned, task, rows),
            "honest": float(honest.per_fold[k]),
        })
    method = ("argmax + class offsets" if class_offsets else "argmax") if task == "multiclass" else (
        "exact per-class F1 search" if metric == "f1_macro" else "global threshold + coordinate ascent")
    return OofScores(metric, score(metric, Y, labels_05, task), score(metric, Y, labels_tuned, task),
                     float(honest.overall), per_fold, np.asarray(optimizer.thresholds_, dtype=float), method)


def _safe(metric: str, Y: np.ndarray, pred: np.ndarray, task: str, rows: np.ndarray) -> float:
    return float(score(metric, Y[rows], pred[rows], task))
