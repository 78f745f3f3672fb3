"""Score a run's chain (``comp.chain``) the three ways every run reports, and the files that hold them.

- **at 0.5**: the run's OOF probabilities with the default decision (p >= 0.5; multiclass argmax);
- **tuned**: with the decision fitted on the same OOF (optimistic);
- **honest**: the whole chain (blend weights, meta-model, thresholds) fitted on the other folds
  and applied to each held-out fold (``comp.chain.cross_fit``).

A probability metric (log_loss, roc_auc_macro) scores the probabilities, so it has no thresholds:
its "at 0.5" and "tuned" are the OOF's score, and it never replaces a run's decision thresholds
(``merge_scores`` keeps it as its own entry). Every stored score carries its metric and direction.

scores.json::

    {"metric": "f1_macro", "greater_is_better": true,
     "cv": {"at_0.5": .., "tuned": .., "honest": ..},
     "per_fold": [{"fold": 0, "rows": .., "at_0.5": .., "tuned": .., "honest": .., "seconds": ..}, ...],
     "other_metrics": {"log_loss": {"greater_is_better": false, "cv": {...}, "per_fold": [...]}},
     "task": .., "n_folds": .., "seconds": ..,               (trained runs)
     "members": {"tfidf": {"metric": .., "greater_is_better": .., "at_0.5": .., "tuned": .., "honest": ..}}}
                                                             (ensembles: members in the ensemble's metric)

thresholds.json::

    {"metric": "f1_macro" | null (the default decision, tuned for no metric), "greater_is_better": true | null,
     "task": .., "method": "exact per-class F1 search", "min_labels": 0, "score": <tuned, in-sample> | null,
     "thresholds": {"class": 0.31, ...}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from comp.blend import MeanBlender
from comp.chain import Chain, cross_fit
from comp.decision import DefaultDecision
from comp.errors import ConfigError, RunError
from comp.metrics import METRICS, get_metric, score
from comp.thresholds import ThresholdOptimizer

ESTIMATES = ("at_0.5", "tuned", "honest")


def direction(metric: str | None) -> str:
    """'higher is better', 'lower is better', or 'direction unknown' for a name comp does not know."""
    if metric not in METRICS:
        return "direction unknown"
    return "higher is better" if METRICS[metric].greater_is_better else "lower is better"


def greater_is_better(metric: str | None) -> bool | None:
    return METRICS[metric].greater_is_better if metric in METRICS else None


@dataclass
class OofScores:
    """A run's CV in one ``metric``: overall and per fold (``per_fold`` rows: fold, rows, at_0.5,
    tuned, honest), the decision's ``thresholds`` ``(n_classes,)`` (multiclass: offsets), the
    search ``method`` that found them and ``tuned_for``, the metric they maximise (None: the
    default decision)."""

    metric: str
    at_05: float
    tuned: float
    honest: float
    per_fold: list[dict[str, Any]]
    thresholds: np.ndarray
    method: str
    tuned_for: str | None = None

    @property
    def greater_is_better(self) -> bool:
        return get_metric(self.metric).greater_is_better

    @property
    def direction(self) -> str:
        return direction(self.metric)

    @property
    def optimism(self) -> float:
        """How much fitting on the OOF flatters the CV: tuned better than honest by this much (in the
        metric's units; positive = flattering, whichever way the metric points)."""
        sign = 1.0 if self.greater_is_better else -1.0
        return sign * (self.tuned - self.honest)

    def entry(self) -> dict[str, Any]:
        """The metric's record as scores.json stores it (under ``other_metrics`` without ``metric``)."""
        return {
            "metric": self.metric,
            "greater_is_better": self.greater_is_better,
            "cv": {"at_0.5": self.at_05, "tuned": self.tuned, "honest": self.honest},
            "per_fold": self.per_fold,
        }

    def scores_json(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {**self.entry(), **(extra or {})}

    def thresholds_json(self, classes: list[str], task: str, min_labels: int) -> dict[str, Any]:
        return {
            "metric": self.tuned_for,
            "greater_is_better": greater_is_better(self.tuned_for),
            "task": task,
            "method": self.method,
            "min_labels": min_labels,
            "score": self.tuned if self.tuned_for == self.metric else None,
            "thresholds": {c: float(t) for c, t in zip(classes, self.thresholds, strict=True)},
        }


def decision_for(metric: str, task: str, min_labels: int = 0, class_offsets: bool = False):
    """The decision step a run scored by ``metric`` gets: thresholds tuned for a label metric, the
    default decision for a probability metric (which scores probabilities, not decisions)."""
    if not get_metric(metric).needs_proba:
        return ThresholdOptimizer(metric, task, min_labels, class_offsets)
    if class_offsets:
        raise ConfigError(
            f"--offsets tunes the decision, but metric '{metric}' scores probabilities; "
            "drop --offsets or pick a label metric"
        )
    return DefaultDecision(task, min_labels)


def evaluate_chain(chain: Chain, M, Y, folds, metric: str) -> OofScores:
    """Fit ``chain`` on members ``M`` ``(n_members, n_samples, n_classes)`` and labels ``Y`` (in
    place: ``chain.oof_`` is then the run's OOF), and score it at 0.5, tuned and honest."""
    task = chain.task
    chain.fit(M, Y, folds)
    P = chain.oof_
    honest = cross_fit(chain, M, Y, folds, metric)
    folds = np.asarray(folds).reshape(-1)
    if get_metric(metric).needs_proba:
        at_05 = tuned = P
    else:
        min_labels = getattr(chain.decision_, "min_labels", 0)
        at_05 = DefaultDecision(task, min_labels).fit(P).transform(P)
        tuned = chain.decision_.transform(P)
    per_fold = []
    for k, honest_k in zip(honest.folds, honest.per_fold, strict=True):
        rows = folds == k
        per_fold.append(
            {
                "fold": int(k),
                "rows": int(rows.sum()),
                "at_0.5": float(score(metric, Y[rows], at_05[rows], task)),
                "tuned": float(score(metric, Y[rows], tuned[rows], task)),
                "honest": honest_k,
            }
        )
    tuned_for = getattr(chain.decision_, "metric", None)
    method = chain.decision_.method_
    if tuned_for is None and get_metric(metric).needs_proba:
        method += f" ({metric} scores probabilities: no thresholds to tune)"
    return OofScores(
        metric,
        float(score(metric, Y, at_05, task)),
        float(score(metric, Y, tuned, task)),
        honest.score,
        per_fold,
        np.asarray(chain.decision_.thresholds_, dtype=float),
        method,
        tuned_for,
    )


def evaluate_oof(
    P: np.ndarray,
    Y: np.ndarray,
    folds: np.ndarray,
    task: str,
    metric: str,
    min_labels: int = 0,
    class_offsets: bool = False,
) -> OofScores:
    """One model's OOF ``P`` ``(n_samples, n_outputs)`` scored with its decision for ``metric``;
    ``folds`` ``(n_samples,)`` the fold of each row."""
    chain = Chain(MeanBlender(task), decision=decision_for(metric, task, min_labels, class_offsets), task=task)
    return evaluate_chain(chain, P, Y, folds, metric)


# ---- reading and merging scores.json -----------------------------------------------------------


def score_entry(scores: dict[str, Any] | None, metric: str | None = None) -> dict[str, Any] | None:
    """The record of ``metric`` in a scores.json dict (default: its main metric), as
    ``{"metric", "greater_is_better", "cv", "per_fold"}``; None when the run has no such score.
    Files written before scores carried their direction get it from the metric's name."""
    if not scores:
        return None
    main = scores.get("metric")
    if metric is None or metric == main:
        record = {"metric": main, "cv": scores.get("cv") or {}, "per_fold": scores.get("per_fold") or []}
        gib = scores.get("greater_is_better", greater_is_better(main))
    else:
        other = (scores.get("other_metrics") or {}).get(metric)
        if not other:
            return None
        record = {"metric": metric, "cv": other.get("cv") or {}, "per_fold": other.get("per_fold") or []}
        gib = other.get("greater_is_better", greater_is_better(metric))
    return {**record, "greater_is_better": gib}


def merge_scores(previous: dict[str, Any], new: OofScores) -> tuple[dict[str, Any], bool]:
    """scores.json after re-scoring a run with ``new``, and whether ``new``'s decision replaces the
    run's thresholds. A label metric becomes the run's metric (its thresholds are the decision);
    a probability metric never displaces a label metric's thresholds: it is kept as its own entry
    under ``other_metrics``. The other keys (task, n_folds, seconds, members) are kept."""
    kept = {
        k: v for k, v in previous.items() if k not in ("metric", "greater_is_better", "cv", "per_fold", "other_metrics")
    }
    others = dict(previous.get("other_metrics") or {})
    main = previous.get("metric")
    main_is_label = main in METRICS and not METRICS[main].needs_proba
    for row, old in zip(new.per_fold, previous.get("per_fold") or [], strict=False):
        if old.get("seconds") is not None:
            row["seconds"] = old["seconds"]
    if get_metric(new.metric).needs_proba and main_is_label and main != new.metric:
        entry = new.entry()
        entry.pop("metric")
        others[new.metric] = entry
        main_record = {k: previous[k] for k in ("metric", "greater_is_better", "cv", "per_fold") if k in previous}
        main_record.setdefault("greater_is_better", greater_is_better(main))
        return {**main_record, "other_metrics": others, **kept}, False
    if main in METRICS and main != new.metric and METRICS[main].needs_proba:
        others[main] = {k: v for k, v in (score_entry(previous) or {}).items() if k != "metric"}
    others.pop(new.metric, None)
    merged = new.scores_json()
    if others:
        merged["other_metrics"] = others
    return {**merged, **kept}, True


def threshold_values(record: dict[str, Any], classes: list[str]) -> np.ndarray:
    """thresholds.json's values in ``classes`` order, NaN where none was tuned (files written before
    probability metrics got the default decision)."""
    values = record.get("thresholds") or {}
    missing = [c for c in classes if c not in values]
    if missing:
        raise RunError(
            f"thresholds.json has no threshold for class(es) {', '.join(missing[:5])}; "
            "re-fit them with `comp thresholds RUN`"
        )
    return np.array([np.nan if values[c] is None else float(values[c]) for c in classes])
