"""Fold assignment, made once per (K, seed, group column) and shared by every run.

Multilabel: MultilabelStratifiedKFold (iterative stratification). Multiclass and binary:
StratifiedKFold. With a group column, whole groups go to one fold: groups are stratified by their
label counts (multilabel) or by StratifiedGroupKFold (multiclass, binary).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from comp.atomic import write_csv
from comp.data import Competition, read_csv
from comp.digest import sha256_file
from comp.errors import DataError


def assign_folds(Y: np.ndarray, task: str, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold index per row, shape (n_samples,), values 0..n_folds-1. Deterministic for a seed."""
    n = len(Y)
    if n_folds < 2:
        raise DataError(f"--folds must be at least 2, got {n_folds}")
    if n < n_folds:
        raise DataError(f"train.csv has {n} rows, fewer than {n_folds} folds; use fewer folds")
    folds = np.full(n, -1, dtype=np.int64)
    with warnings.catch_warnings():
        # rare classes are reported by `class_warnings`; sklearn's own warning would repeat it
        warnings.simplefilter("ignore", UserWarning)
        if groups is not None:
            return _grouped_folds(Y, task, n_folds, seed, groups)
        if task == "multilabel":
            splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            splits = splitter.split(np.zeros(n), Y)
        else:
            y = _class_codes(Y, task)
            splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            try:
                splits = list(splitter.split(np.zeros(n), y))
            except ValueError as exc:
                raise DataError(f"cannot make {n_folds} stratified folds: {exc}; use fewer folds") from None
        for k, (_, valid) in enumerate(splits):
            folds[valid] = k
    return folds


def _class_codes(Y: np.ndarray, task: str) -> np.ndarray:
    return Y[:, 0].astype(np.int64) if task == "binary" else Y.argmax(axis=1)


def _grouped_folds(Y: np.ndarray, task: str, n_folds: int, seed: int, groups: np.ndarray) -> np.ndarray:

    codes, uniques = pd.factorize(pd.Series(groups), sort=True)
    if len(uniques) < n_folds:
        raise DataError(f"the group column has {len(uniques)} groups, fewer than {n_folds} folds; use fewer folds")
    if task == "multilabel":
        # one row per group: does the group contain the class at all
        group_Y = np.zeros((len(uniques), Y.shape[1]), dtype=np.uint8)
        np.maximum.at(group_Y, codes, Y)
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        group_folds = np.full(len(uniques), -1, dtype=np.int64)
        for k, (_, valid) in enumerate(splitter.split(np.zeros(len(uniques)), group_Y)):
            group_folds[valid] = k
        return group_folds[codes]

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(Y), -1, dtype=np.int64)
    for k, (_, valid) in enumerate(splitter.split(np.zeros(len(Y)), _class_codes(Y, task), codes)):
        folds[valid] = k
    return folds


@dataclass
class FoldBalance:
    """Per fold: rows, the largest deviation of a class's prevalence from train's, and which class."""

    fold: int
    rows: int
    max_deviation: float  # absolute, in prevalence units (0.01 = one percentage point)
    worst_class: str
    classes_missing: int  # classes with no positive row in this fold


def fold_balance(Y: np.ndarray, folds: np.ndarray, classes: list[str], task: str) -> list[FoldBalance]:
    if task == "binary":
        Y = np.concatenate([1 - Y, Y], axis=1)
        classes = ["negative", *classes]
    overall = Y.mean(axis=0)
    report = []
    for k in range(int(folds.max()) + 1):
        rows = folds == k
        prevalence = Y[rows].mean(axis=0)
        deviation = np.abs(prevalence - overall)
        worst = int(deviation.argmax())
        report.append(
            FoldBalance(
                k, int(rows.sum()), float(deviation[worst]), classes[worst], int((Y[rows].sum(axis=0) == 0).sum())
            )
        )
    return report


def class_warnings(Y: np.ndarray, classes: list[str], n_folds: int, task: str) -> list[str]:
    """Classes with fewer positive rows than folds: some folds will have none of them."""
    counts = Y.sum(axis=0) if task != "binary" else np.array([len(Y) - Y.sum(), Y.sum()])
    names = classes if task != "binary" else ["negative", *classes]
    out = []
    for name, count in zip(names, counts, strict=True):
        if count == 0:
            out.append(f"class '{name}' has no positive row in train.csv: its probability will be 0 everywhere")
        elif count < n_folds:
            out.append(
                f"class '{name}' has {int(count)} row(s), fewer than {n_folds} folds: the fold file puts each "
                f"in a different fold, so {n_folds - int(count)} fold(s) have none in validation; the model "
                "trained on such a fold still sees it, and its threshold is tuned on the whole OOF"
            )
    return out


def make_folds(comp: Competition, n_folds: int, seed: int, group_column: str | None = None) -> pd.DataFrame:
    """A DataFrame (id, fold) in train order."""

    settings = comp.settings
    groups = None
    if group_column:
        if group_column not in comp.train.columns:
            raise DataError(
                f"train.csv has no column '{group_column}' for --group-column; columns are: "
                f"{', '.join(comp.train.columns)}"
            )
        groups = comp.train[group_column].to_numpy()
    folds = assign_folds(comp.Y, settings.task, n_folds, seed, groups)
    return pd.DataFrame({settings.id_column: comp.train_ids, "fold": folds})


def write_folds(path: Path, frame: pd.DataFrame) -> str:
    write_csv(path, frame)
    return sha256_file(path)


def load_folds(path: Path, comp: Competition, n_folds: int | None = None) -> np.ndarray:
    """Fold index per train row (train order), checking that the fold file matches train.csv and,
    with ``n_folds``, that it holds exactly folds 0..n_folds-1."""
    frame = read_csv(path)
    id_column = comp.settings.id_column
    recreate = f"recreate it with `comp folds{f' --folds {n_folds}' if n_folds else ''} --force`"
    if id_column not in frame.columns or "fold" not in frame.columns:
        raise DataError(
            f"{path.name} must have columns '{id_column}' and 'fold' (found: {', '.join(frame.columns)}); {recreate}"
        )
    if frame[id_column].duplicated().any():
        dup = frame[id_column][frame[id_column].duplicated()].iloc[0]
        raise DataError(f"{path.name} lists id '{dup}' more than once; {recreate}")
    mapping = dict(zip(frame[id_column], frame["fold"], strict=True))
    train_ids = comp.train_ids
    missing = [i for i in train_ids if i not in mapping]
    extra = set(mapping) - set(train_ids)
    if missing or extra:
        raise DataError(
            f"{path.name} does not match train.csv: {len(missing)} train id(s) missing from it, "
            f"{len(extra)} id(s) not in train; {recreate} "
            "(runs trained on the old folds cannot be blended with new ones)"
        )
    try:
        folds = np.array([int(mapping[i]) for i in train_ids], dtype=np.int64)
    except ValueError:
        raise DataError(f"{path.name} has a non-integer fold value; {recreate}") from None
    found = sorted(set(folds.tolist()))
    expected = n_folds if n_folds is not None else int(folds.max()) + 1
    if found != list(range(expected)):
        shown = ", ".join(map(str, found[:12])) + (", ..." if len(found) > 12 else "")
        raise DataError(f"{path.name} holds folds {shown}, not 0..{expected - 1}; {recreate}")
    return folds
