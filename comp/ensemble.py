"""Blend runs trained on the same folds: mean, rank or weighted (Caruana's greedy selection).

An ensemble is written as a run with the same files as a trained model (plus weights.json), so
`thresholds`, `submit`, `runs` and `report` take it unchanged. Because weights and thresholds are
both fitted on the OOF, its honest estimate re-fits both on K-1 folds and scores the held-out fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comp.atomic import write_json
from comp.errors import RunError
from comp.evaluation import OofScores, evaluate_oof, optimizer_for
from comp.metrics import METRICS, score
from comp.runs import RunData, labels_for, load_run, now, package_versions, write_run_outputs, write_run_yaml
from comp.workspace import Workspace

METHODS = ("mean", "rank", "weighted")


def rank_transform(oof: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class, map values to their quantile in the OOF distribution (test through the same map),
    so that OOF and test stay on one scale and the OOF thresholds still apply to test."""
    oof_r, test_r = np.empty_like(oof, dtype=float), np.empty_like(test, dtype=float)
    n = len(oof)
    for j in range(oof.shape[1]):
        ref = np.sort(oof[:, j])
        oof_r[:, j] = np.searchsorted(ref, oof[:, j], side="right") / n
        test_r[:, j] = np.searchsorted(ref, test[:, j], side="right") / n
    return oof_r, test_r


def _normalise(P: np.ndarray, task: str) -> np.ndarray:
    if task == "multiclass":
        return P / np.clip(P.sum(axis=1, keepdims=True), 1e-12, None)
    return P


class CaruanaBlender:
    """Greedy forward selection with replacement (Caruana et al., 2004).

    ``fit(members, Y)`` takes a list of OOF arrays, each (n_samples, n_outputs), and sets ``weights_``
    (non-negative, summing to one): at each step the member whose addition most improves the metric
    (after threshold tuning) is added once more; stops after ``max_steps`` or when nothing improves
    for ``patience`` steps.
    """

    def __init__(self, metric: str, task: str, min_labels: int = 0, max_steps: int = 40, patience: int = 5):
        self.metric, self.task, self.min_labels = metric, task, min_labels
        self.max_steps, self.patience = max_steps, patience

    def _score(self, P: np.ndarray, Y: np.ndarray) -> float:
        if METRICS[self.metric].needs_proba:
            return score(self.metric, Y, P, self.task)
        return optimizer_for(self.metric, self.task, self.min_labels).fit(P, Y).score_

    def fit(self, members: list[np.ndarray], Y: np.ndarray) -> CaruanaBlender:
        sign = 1.0 if METRICS[self.metric].greater_is_better else -1.0
        counts = np.zeros(len(members), dtype=int)
        total = np.zeros_like(members[0], dtype=float)
        best_score, best_counts, since_best = -np.inf, None, 0
        for _ in range(self.max_steps):
            trials = [sign * self._score((total + m) / (counts.sum() + 1), Y) for m in members]
            pick = int(np.argmax(trials))
            counts[pick] += 1
            total += members[pick]
            if trials[pick] > best_score + 1e-12:
                best_score, best_counts, since_best = trials[pick], counts.copy(), 0
            else:
                since_best += 1
                if since_best >= self.patience:
                    break
        self.weights_ = best_counts / best_counts.sum()
        self.score_ = sign * best_score
        return self

    def blend(self, members: list[np.ndarray]) -> np.ndarray:
        return sum(w * m for w, m in zip(self.weights_, members, strict=True))


def check_compatible(runs: list[RunData]) -> None:
    """Same fold file, same train and test ids, same classes; names the culprits otherwise."""
    first = runs[0]
    fold_of = {r.name: (r.record.get("folds", {}).get("file"), r.record.get("folds", {}).get("hash")) for r in runs}
    for r in runs[1:]:
        if fold_of[r.name] != fold_of[first.name]:
            raise RunError(
                f"runs '{first.name}' and '{r.name}' were trained on different fold files ({fold_of[first.name][0]} vs "
                f"{fold_of[r.name][0]}); retrain one of them with the other's --folds/--seed so their OOF rows line up"
            )
        if r.ids != first.ids or r.test_ids != first.test_ids or not np.array_equal(r.folds, first.folds):
            raise RunError(f"runs '{first.name}' and '{r.name}' have different train or test ids; retrain them on the same data")
        if r.classes != first.classes:
            raise RunError(f"runs '{first.name}' and '{r.name}' have different classes; they belong to different competitions")


@dataclass
class EnsembleResult:
    name: str
    weights: dict[str, float]
    scores: OofScores
    members: dict[str, dict]  # member -> its cv (honest etc.)


def blend_members(runs: list[RunData], method: str, Y: np.ndarray, folds: np.ndarray, task: str, metric: str,
                  min_labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, OofScores]:
    """Blended OOF and test probabilities, member weights, and the scores (honest: weights re-fitted per fold)."""
    oofs, tests = [r.oof for r in runs], [r.test for r in runs]
    if method == "rank":
        pairs = [rank_transform(o, t) for o, t in zip(oofs, tests, strict=True)]
        oofs, tests = [p[0] for p in pairs], [p[1] for p in pairs]
    if method == "weighted":
        blender = CaruanaBlender(metric, task, min_labels).fit(oofs, Y)
        weights = blender.weights_
    else:
        weights = np.full(len(runs), 1.0 / len(runs))
    oof = _normalise(sum(w * o for w, o in zip(weights, oofs, strict=True)), task)
    test = _normalise(sum(w * t for w, t in zip(weights, tests, strict=True)), task)
    scores = evaluate_oof(oof, Y, folds, task, metric, min_labels)
    if method == "weighted":
        honest_weights(scores, oofs, Y, folds, task, metric, min_labels)
    return oof, test, weights, scores


def honest_weights(scores: OofScores, oofs: list[np.ndarray], Y: np.ndarray, folds: np.ndarray, task: str,
                    metric: str, min_labels: int) -> None:
    """Replace the honest estimate by one where weights AND thresholds are fitted without fold k."""
    predictions = np.zeros_like(Y) if not METRICS[metric].needs_proba else np.zeros(Y.shape, dtype=float)
    for k in range(int(folds.max()) + 1):
        fit_rows, held = folds != k, folds == k
        blender = CaruanaBlender(metric, task, min_labels).fit([o[fit_rows] for o in oofs], Y[fit_rows])
        fitted = _normalise(blender.blend([o[fit_rows] for o in oofs]), task)
        heldout = _normalise(blender.blend([o[held] for o in oofs]), task)
        if METRICS[metric].needs_proba:
            predictions[held] = heldout
        else:
            predictions[held] = optimizer_for(metric, task, min_labels).fit(fitted, Y[fit_rows]).transform(heldout)
        scores.per_fold[k]["honest"] = float(score(metric, Y[held], predictions[held], task))
    scores.honest = float(score(metric, Y, predictions, task))


def make_ensemble(ws: Workspace, names: list[str], name: str, method: str = "mean", metric: str | None = None,
                  force: bool = False) -> EnsembleResult:
    settings = ws.load_settings()
    metric = metric or settings.metric
    if method not in METHODS:
        raise RunError(f"unknown ensemble method '{method}'; choose one of {', '.join(METHODS)}")
    if metric not in METRICS:
        raise RunError(f"unknown metric '{metric}'; choose one of {', '.join(METRICS)}")
    if len(set(names)) < 2:
        raise RunError("an ensemble needs at least two different runs; `comp runs` lists them")
    if name in names:
        raise RunError(f"the ensemble name '{name}' is one of its members; choose another --name")
    paths = ws.run(name)
    if paths.exists and not force:
        raise RunError(f"run '{name}' already exists; pass --force to replace it or choose another --name")
    runs = [load_run(ws, n, settings.output_names) for n in names]
    check_compatible(runs)
    comp = labels_for(ws, runs[0])
    folds = runs[0].folds
    oof, test, weights, scores = blend_members(runs, method, comp.Y, folds, settings.task, metric, settings.min_labels)
    members = {r.name: r.scores.get("cv", {}) for r in runs}
    weight_map = {r.name: float(w) for r, w in zip(runs, weights, strict=True)}
    record = {
        "name": name,
        "kind": "ensemble",
        "model": f"ensemble({method})",
        "config": {"method": method, "metric": metric, "members": names},
        "members": names,
        "folds": runs[0].record.get("folds", {}),
        "competition": runs[0].record.get("competition", {}),
        "data": runs[0].record.get("data"),  # the members' data fingerprint, which load_run checked is current
        "versions": package_versions(),
        "created": now(),
        "completed": now(),
        "seconds": None,
    }
    write_run_outputs(paths, settings.id_column, settings.output_names, runs[0].ids, folds, oof, runs[0].test_ids, test,
                      scores.scores_json({"task": settings.task, "n_folds": int(folds.max()) + 1, "members": members}),
                      scores.thresholds_json(settings.output_names, settings.task, settings.min_labels))
    write_json(paths.weights, {"method": method, "metric": metric, "weights": weight_map})
    write_run_yaml(paths, record)
    return EnsembleResult(name, weight_map, scores, members)
