"""Seed averaging: ``seeds: N`` (or `comp train --seeds N`) trains every fold N times with N seeds
and averages the probabilities, which tames the variance of rare classes.

Each (fold, seed) is a task of its own, with its own folder, lock and done marker (comp.locks):

```
runs/<run>/fold-<k>/seed-<s>/   oof.npy, test.npy, done.json (seed index and value), model/, checkpoints
runs/<run>/fold-<k>/            oof.npy, test.npy: the mean over the seeds; done.json once all are done
```

With one seed there is no seed-<s>/ folder and the seed is today's (fold seed + k), so `--seeds 1`
gives the same bytes as a run without it. Seed index s > 0 takes a seed drawn from
``SeedSequence([fold seed, k, s])``: deterministic, and unrelated to the other folds' seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def task_seed(fold_seed: int, fold: int, index: int) -> int:
    """The training seed of fold ``fold``'s seed number ``index`` (0: fold_seed + fold, as with one seed)."""
    if index == 0:
        return fold_seed + fold
    return int(np.random.SeedSequence([fold_seed, fold, index]).generate_state(1)[0])


def mean_of(arrays: list[np.ndarray]) -> np.ndarray:
    """The element-wise mean of the seeds' probabilities, (n_rows, n_outputs), summed in seed order."""
    return np.mean(np.stack([np.asarray(a, dtype=np.float64) for a in arrays]), axis=0)


def seed_spread(per_seed: list[np.ndarray], Y: np.ndarray, folds: np.ndarray, settings, averaged) -> dict[str, Any]:
    """How much the seeds differ, for scores.json: each seed's OOF (``per_seed``: (n_rows, n_outputs)
    each) scored alone (at 0.5, tuned, honest) and its per-class F1 with thresholds tuned on it; the
    per-class spread (min, max, std over seeds) next to the averaged run's per-class F1."""
    from comp.evaluation import evaluate_oof

    classes = settings.output_names
    scores, f1 = [], []
    for P in per_seed:
        s = evaluate_oof(P, Y, folds, settings.task, settings.metric, settings.min_labels)
        scores.append({"at_0.5": s.at_05, "tuned": s.tuned, "honest": s.honest})
        f1.append(_class_f1(P, Y, s.thresholds, settings))
    f1 = np.array(f1)  # (n_seeds, n_classes)
    mean_f1 = _class_f1(mean_of(per_seed), Y, averaged.thresholds, settings)
    return {
        "n": len(per_seed),
        "metric": settings.metric,
        "per_seed": scores,
        "per_class_f1": {
            c: {
                "min": float(f1[:, j].min()),
                "max": float(f1[:, j].max()),
                "std": float(f1[:, j].std()),
                "averaged": float(mean_f1[j]),
            }
            for j, c in enumerate(classes)
        },
    }


def _class_f1(P: np.ndarray, Y: np.ndarray, thresholds: np.ndarray, settings) -> np.ndarray:
    """Per-class F1 ``(n_classes,)`` with the given tuned thresholds (0.5 / argmax where none was tuned)."""
    from comp.decision import apply_thresholds, default_thresholds
    from comp.metrics import per_class

    default = default_thresholds(settings.task, Y.shape[1])
    t = np.where(np.isnan(thresholds), default, thresholds)
    return np.asarray(per_class(Y, apply_thresholds(P, t, settings.task, settings.min_labels))["f1"], dtype=float)


def describe_spread(spread: dict[str, Any], metric: str) -> str:
    """One line: each seed's honest CV and the class whose F1 moves most between seeds."""
    honest = " ".join(f"{s['honest']:.4f}" for s in spread["per_seed"])
    name, widest = max(spread["per_class_f1"].items(), key=lambda item: item[1]["max"] - item[1]["min"])
    return (
        f"{spread['n']} seeds: honest {metric} per seed {honest}; widest per-class F1 spread: {name} "
        f"{widest['min']:.3f}-{widest['max']:.3f} (averaged {widest['averaged']:.3f})"
    )
