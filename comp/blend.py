"""Blenders: the first step of a post-processing chain (``comp.chain``), members to probabilities.

Each takes members ``M`` ``(n_members, n_samples, n_classes)`` (every member's OOF probabilities,
rows aligned) and returns probabilities ``(n_samples, n_classes)``; after ``fit`` it has
``weights_`` ``(n_members,)``, non-negative and summing to one (for a stack: each member's share
of the meta-models' coefficients). ``BLENDERS`` maps an ensemble's ``--method`` to its class.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from comp.chain import check_members, get_params
from comp.errors import ConfigError
from comp.metrics import check_labels, get_metric, score
from comp.stack import StackBlender
from comp.thresholds import ThresholdOptimizer


def _normalise(P: np.ndarray, task: str) -> np.ndarray:
    """Multiclass rows summing to one (rank averages do not)."""
    if task == "multiclass":
        return P / np.clip(P.sum(axis=1, keepdims=True), 1e-12, None)
    return P


class MeanBlender:
    """The plain mean of the members (one member: that member, unchanged)."""

    cross_fit_output = False

    def __init__(self, task: str = "multilabel"):
        self.task = task

    def fit(self, M, Y=None) -> MeanBlender:
        n_members = check_members(M).shape[0]
        self.weights_ = np.full(n_members, 1.0 / n_members)
        return self

    def transform(self, M) -> np.ndarray:
        M = check_members(M)
        return M[0].copy() if M.shape[0] == 1 else M.mean(axis=0)


class RankBlender:
    """The mean of each member's per-class quantile in the fitting rows' distribution. New rows
    (another fold, test) go through the same map, so they stay on the scale the decision was
    fitted on. Sets ``reference_`` ``(n_members, n_samples, n_classes)``: the sorted fitting values."""

    cross_fit_output = False

    def __init__(self, task: str = "multilabel"):
        self.task = task

    def fit(self, M, Y=None) -> RankBlender:
        M = check_members(M)
        self.reference_ = np.sort(M, axis=1)
        self.weights_ = np.full(M.shape[0], 1.0 / M.shape[0])
        return self

    def transform(self, M) -> np.ndarray:
        M = check_members(M)
        ref = self.reference_
        n = ref.shape[1]
        out = np.zeros(M.shape[1:])
        for m in range(M.shape[0]):
            for j in range(M.shape[2]):
                out[:, j] += np.searchsorted(ref[m, :, j], M[m, :, j], side="right") / n
        return _normalise(out / M.shape[0], self.task)


def rank_transform(oof: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One member's OOF ``(n_samples, n_classes)`` and test ``(n_test, n_classes)`` as quantiles of
    the OOF distribution, per class (what :class:`RankBlender` does with all OOF rows)."""
    blender = RankBlender().fit(oof[None])
    return blender.transform(oof[None]), blender.transform(test[None])


class CaruanaBlender:
    """Greedy forward selection with replacement (Caruana et al., 2004).

    At each step the member whose addition most improves ``metric`` on the blend (label metrics:
    after threshold tuning, in-sample) is added once more; stops after ``max_steps`` or when nothing
    improves for ``patience`` steps. Lower-is-better metrics (log_loss) are minimised. Sets
    ``weights_`` (selection counts over their sum) and ``score_`` (the best blend's metric).
    """

    cross_fit_output = False

    def __init__(
        self,
        metric: str = "f1_macro",
        task: str = "multilabel",
        min_labels: int = 0,
        max_steps: int = 40,
        patience: int = 5,
    ):
        self.metric = metric
        self.task = task
        self.min_labels = min_labels
        self.max_steps = max_steps
        self.patience = patience

    def _score(self, P: np.ndarray, Y: np.ndarray) -> float:
        if get_metric(self.metric).needs_proba:
            return score(self.metric, Y, P, self.task)
        return ThresholdOptimizer(self.metric, self.task, self.min_labels).fit(P, Y).score_

    def fit(self, M, Y) -> CaruanaBlender:
        M = check_members(M)
        Y = check_labels(Y, self.task, "Y")
        sign = 1.0 if get_metric(self.metric).greater_is_better else -1.0
        counts = np.zeros(M.shape[0], dtype=int)
        total = np.zeros(M.shape[1:])
        best_score, best_counts, since_best = -np.inf, None, 0
        for _ in range(self.max_steps):
            trials = [sign * self._score((total + m) / (counts.sum() + 1), Y) for m in M]
            pick = int(np.argmax(trials))
            counts[pick] += 1
            total += M[pick]
            if trials[pick] > best_score + 1e-12:
                best_score, best_counts, since_best = trials[pick], counts.copy(), 0
            else:
                since_best += 1
                if since_best >= self.patience:
                    break
        self.weights_ = best_counts / best_counts.sum()
        self.score_ = sign * best_score
        return self

    def transform(self, M) -> np.ndarray:
        return np.tensordot(self.weights_, check_members(M), axes=1)


BLENDERS = {"mean": MeanBlender, "rank": RankBlender, "weighted": CaruanaBlender, "stack": StackBlender}
METHODS = tuple(BLENDERS)


def make_blender(config: dict[str, Any], task: str, min_labels: int = 0):
    """The blender an ensemble's config (run.yaml) describes: ``method`` picks the class, and the
    config's keys that name its parameters set them (``metric``: the weighted blend's objective)."""
    method = config.get("method")
    if method not in BLENDERS:
        raise ConfigError(f"unknown ensemble method '{method}'; choose one of {', '.join(METHODS)}")
    cls = BLENDERS[method]
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    params = {k: config[k] for k in names if config.get(k) is not None}
    params.update({k: v for k, v in (("task", task), ("min_labels", min_labels)) if k in names})
    return cls(**params)


def blender_config(blender) -> dict[str, Any]:
    """The blender's parameters for run.yaml, without those the workspace gives (task, min_labels)."""
    return {k: v for k, v in get_params(blender).items() if k not in ("task", "min_labels")}
