"""A run report's tables, as data: pure functions, arrays in and DataFrames out.

They use comp.metrics and comp.decision, so a report's numbers are the ones `train` and
`thresholds` compute. Arrays are ``(n_samples, n_outputs)`` as everywhere in comp (binary: one
positive column).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_curve

from comp.decision import apply_thresholds, default_label, default_thresholds
from comp.errors import DataError
from comp.evaluation import ESTIMATES
from comp.metrics import check_labels, check_proba, expand_binary, per_class

N_WEAKEST = 5  # classes that get a precision-recall panel


def thresholds_from_json(record: dict[str, Any] | None, classes: Sequence[str]) -> tuple[np.ndarray | None, int | None]:
    """thresholds.json's values in ``classes`` order and its ``min_labels``. The thresholds are None
    when there is no file or they are NaN (a probability metric has nothing to tune)."""
    if not record:
        return None, None
    from comp.evaluation import threshold_values

    t = threshold_values(record, list(classes))
    min_labels = int(record.get("min_labels") or 0)
    return (None if np.isnan(t).any() else t), min_labels


def class_table(Y, P, classes: Sequence[str], task: str, thresholds=None, min_labels: int = 0) -> pd.DataFrame:
    """One row per output column: ``support``, ``prevalence``, the tuned ``threshold`` (multiclass:
    the additive offset), and ``predicted`` count, ``precision``, ``recall``, ``f1`` both at the
    default decision (suffix ``_0.5``; multiclass: argmax) and at the thresholds (suffix ``_tuned``).

    ``Y`` 0/1 and ``P`` probabilities, both ``(n_samples, n_outputs)``; ``thresholds``
    ``(n_outputs,)`` or None for the default decision. ``min_labels`` applies to both decisions,
    as in the run's scores.json.
    """

    Y = check_labels(Y, task, "Y")
    P = check_proba(P, Y.shape, task)
    if len(classes) != Y.shape[1]:
        raise DataError(f"{len(classes)} class names for {Y.shape[1]} label columns; give one name per column")
    default = default_thresholds(task, Y.shape[1])
    tuned = default if thresholds is None else np.asarray(thresholds, dtype=float)
    at_default = per_class(Y, apply_thresholds(P, default, task, min_labels))
    at_tuned = per_class(Y, apply_thresholds(P, tuned, task, min_labels))
    frame = pd.DataFrame(
        {
            "class": [str(c) for c in classes],
            "support": at_default["support"],
            "prevalence": at_default["support"] / Y.shape[0],
            "threshold": tuned,
        }
    )
    for suffix, stats in (("0.5", at_default), ("tuned", at_tuned)):
        frame[f"predicted_{suffix}"] = stats["n_predicted"]
        for name in ("precision", "recall", "f1"):
            frame[f"{name}_{suffix}"] = stats[name]
    return frame


def fold_table(per_fold: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """scores.json's ``per_fold`` list as a frame: fold, rows, at_0.5, tuned, honest, seconds (the
    scores and seconds float, NaN where a run has none)."""

    columns = ["fold", "rows", *ESTIMATES, "seconds"]
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in per_fold], columns=columns)
    # a blend or stack trains nothing per fold (seconds None): NaN, which tables show as "-"
    for name in [*ESTIMATES, "seconds"]:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


def fold_spread(folds: pd.DataFrame) -> pd.DataFrame:
    """Per estimate (at_0.5, tuned, honest): mean, std (ddof=1), min, max and max - min over folds."""

    rows = []
    for name in ESTIMATES:
        v = pd.to_numeric(folds[name], errors="coerce").dropna().to_numpy(dtype=float)
        if v.size == 0:
            continue
        rows.append(
            {
                "estimate": name,
                "mean": v.mean(),
                "std": v.std(ddof=1) if v.size > 1 else math.nan,
                "min": v.min(),
                "max": v.max(),
                "range": v.max() - v.min(),
            }
        )
    return pd.DataFrame(rows, columns=["estimate", "mean", "std", "min", "max", "range"])


def prevalence_table(Y, oof_labels, test_labels, classes: Sequence[str]) -> pd.DataFrame:
    """Share of rows with each class: true in train, predicted on the OOF and predicted on test.
    All inputs 0/1 ``(n_rows, n_outputs)``; a test share far from the OOF share means the test set
    (or the model's behaviour on it) differs from the training data."""

    return pd.DataFrame(
        {
            "class": [str(c) for c in classes],
            "train": np.asarray(Y, dtype=bool).mean(axis=0),
            "oof_predicted": np.asarray(oof_labels, dtype=bool).mean(axis=0),
            "test_predicted": np.asarray(test_labels, dtype=bool).mean(axis=0),
        }
    )


def confusion_table(Y, labels, names: Sequence[str], task: str) -> pd.DataFrame:
    """sklearn's ``confusion_matrix`` ``(n_classes, n_classes)`` as a frame, rows the true class and
    columns the predicted one, for a single-label task (multiclass one-hot; binary one column,
    expanded to [negative, positive])."""

    if task == "multilabel":
        raise DataError("a confusion matrix needs one label per row; multilabel tasks have per-class tables instead")
    Y = check_labels(Y, task, "Y")
    pred = check_labels(labels, task, "predicted labels")
    if task == "binary":
        Y, pred = expand_binary(Y), expand_binary(pred)
    if len(names) != Y.shape[1]:
        raise DataError(f"{len(names)} class names for {Y.shape[1]} classes; give one name per class")
    n = Y.shape[1]
    counts = confusion_matrix(Y.argmax(axis=1), pred.argmax(axis=1), labels=np.arange(n))
    names = [str(c) for c in names]
    return pd.DataFrame(counts, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def pr_curve(y, p) -> dict[str, np.ndarray | float]:
    """sklearn's ``precision_recall_curve`` from the highest threshold to the lowest (recall rising,
    without sklearn's closing point at recall 0) and ``average_precision_score``. ``y`` 0/1 and
    ``p`` ``(n_samples,)``; needs at least one positive."""

    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    if not y.any():
        raise DataError("a precision-recall curve needs at least one positive row")
    precision, recall, thresholds = precision_recall_curve(y, p)
    return {
        "precision": precision[:-1][::-1],
        "recall": recall[:-1][::-1],
        "thresholds": thresholds[::-1],
        "ap": float(average_precision_score(y, p)),
    }


def weakest_classes(table: pd.DataFrame, k: int = N_WEAKEST) -> list[int]:
    """Row positions of the ``k`` classes with the lowest tuned F1 (ties: fewer positives first),
    among classes with at least one positive (others have no curve)."""
    frame = table.reset_index(drop=True)
    frame = frame[frame["support"] > 0]
    return frame.sort_values(["f1_tuned", "support"], kind="stable").index[:k].tolist()


@dataclass
class RunTables:
    per_class: pd.DataFrame
    folds: pd.DataFrame
    spread: pd.DataFrame
    prevalence: pd.DataFrame
    confusion: pd.DataFrame | None  # single-label tasks only
    pr: list[dict[str, Any]]  # precision-recall panels of the weakest classes


def run_tables(
    Y,
    oof,
    test,
    classes: Sequence[str],
    task: str,
    thresholds=None,
    min_labels: int = 0,
    per_fold: Sequence[dict[str, Any]] = (),
    label_names: Sequence[str] | None = None,
) -> RunTables:
    """Every table of a run report. ``Y``, ``oof`` ``(n_train, n_outputs)``, ``test``
    ``(n_test, n_outputs)``; ``label_names``: the confusion matrix's class names (binary: both)."""
    table = class_table(Y, oof, classes, task, thresholds, min_labels)
    used = default_thresholds(task, len(classes)) if thresholds is None else np.asarray(thresholds, float)
    oof_labels = apply_thresholds(oof, used, task, min_labels)
    test_labels = apply_thresholds(np.asarray(test, dtype=float), used, task, min_labels)
    folds = fold_table(per_fold)
    confusion = None
    if task != "multilabel":
        confusion = confusion_table(Y, oof_labels, label_names or classes, task)
    Yb, P = np.asarray(Y, dtype=bool), np.asarray(oof, dtype=float)
    tuned_is_default = np.array_equal(used, default_thresholds(task, len(classes)))
    panels = []
    for j in weakest_classes(table):
        row = table.iloc[j]
        curve = pr_curve(Yb[:, j], P[:, j])
        if tuned_is_default:
            points = {default_label(task): (row["recall_0.5"], row["precision_0.5"])}
        else:
            points = {
                default_label(task): (row["recall_0.5"], row["precision_0.5"]),
                "tuned": (row["recall_tuned"], row["precision_tuned"]),
            }
        panels.append(
            {
                "name": f"{row['class']} (F1 {row['f1_tuned']:.2f}, n={int(row['support'])})",
                "precision": curve["precision"],
                "recall": curve["recall"],
                "ap": curve["ap"],
                "prevalence": float(row["prevalence"]),
                "points": points,
            }
        )
    return RunTables(
        table,
        folds,
        fold_spread(folds),
        prevalence_table(Y, oof_labels, test_labels, classes),
        confusion,
        panels,
    )
