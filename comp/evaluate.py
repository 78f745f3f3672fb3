"""Score a submission file against an answer key: the competition's metric plus per-class precision,
recall and F1. For practice competitions and finished ones whose test labels are public.

The key has sample_submission's shape (id column + label columns holding the true values), as
`comp fetch --hf` writes ``test_labels.csv``. Rows are matched by id, so the file may list them in any
order; every other check is `comp.submission.check_submission`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from comp.decision import DEFAULT_THRESHOLD, default_labels
from comp.errors import ConfigError, DataError
from comp.metrics import get_metric, per_class, score
from comp.submission_checks import check_submission
from comp.submission_format import layout
from comp.workspace import CompSettings

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Evaluation:
    metric: str
    score: float
    rows: int
    classes: list[str]
    per_class: dict[str, np.ndarray]  # support, n_predicted, precision, recall, f1: each (n_classes,)
    note: str | None = None  # how labels were derived for the per-class table, when they were


def evaluate_file(
    submission: str | Path,
    answers: str | Path,
    settings: CompSettings | None = None,
    metric: str | None = None,
) -> Evaluation:
    """Score the CSV ``submission`` against the CSV ``answers``.

    ``settings`` (comp.yaml) gives the schema and default metric; without a complete schema it is
    inferred from the key: several label columns are multilabel, one is binary or multiclass.
    """
    from comp.data import read_csv

    submission, answers = Path(submission), Path(answers)
    sub, key = read_csv(submission), read_csv(answers)
    if settings is None or not settings.schema_complete:
        inferred = settings_from_key(key, sub)
        if settings is not None:
            inferred.metric = settings.metric
        settings = inferred
    return score_frames(sub, key, settings, metric, submission.name, answers.name)


def score_frames(
    sub: pd.DataFrame,
    key: pd.DataFrame,
    settings: CompSettings,
    metric: str | None = None,
    sub_name: str = "the submission",
    key_name: str = "the answer key",
) -> Evaluation:
    """Score ``sub`` against ``key`` (both all-string frames as `comp.data.read_csv` returns them)."""
    from comp.data import label_matrix

    metric = metric or settings.metric
    spec = get_metric(metric)
    kind = layout(settings)
    settings_columns = [settings.id_column, *settings.label_columns]
    if list(key.columns) != settings_columns:
        raise DataError(
            f"{key_name} has columns {', '.join(key.columns)}; expected {', '.join(settings_columns)} "
            "(sample_submission's)"
        )
    sub = _reorder(sub, key, settings.id_column)
    problems = check_submission(sub, key, settings, reference=key_name)
    if problems:
        raise DataError(f"{sub_name} is invalid: {'; '.join(problems)}")
    # the key holds true labels, also when submissions are probabilities
    key_settings = CompSettings(**{**settings.to_dict(), "submission_format": "labels"})
    Y = label_matrix(key, key_settings, Path(key_name))
    note = None
    if kind == "proba":
        P = _probabilities(sub, settings)
        labels = default_labels(P, settings.task)
        rule = "argmax" if settings.task == "multiclass" else f"probability >= {DEFAULT_THRESHOLD}"
        note = f"labels for the per-class table: {rule}"
        value = score(metric, Y, P if spec.needs_proba else labels, settings.task)
    else:
        if spec.needs_proba:
            raise ConfigError(
                f"metric '{metric}' scores probabilities, but {sub_name} holds labels; pick a label metric"
            )
        labels = label_matrix(sub, key_settings, Path(sub_name))
        value = score(metric, Y, labels, settings.task)
    classes = list(settings.output_names)
    Yc, Lc = Y.astype(bool), np.asarray(labels, dtype=bool)
    if settings.task == "binary":  # show both classes
        Yc, Lc = np.c_[~Yc, Yc], np.c_[~Lc, Lc]
        classes = [str(c) for c in settings.classes]
    return Evaluation(metric, value, len(key), classes, per_class(Yc, Lc), note)


def _reorder(sub: pd.DataFrame, key: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """``sub`` in the key's id order when both hold the same unique ids; else as it is (the check reports it)."""
    if id_column not in sub.columns:
        return sub
    ids = sub[id_column]
    if ids.duplicated().any() or set(ids) != set(key[id_column]) or len(sub) != len(key):
        return sub
    return sub.set_index(id_column, drop=False).loc[key[id_column]].reset_index(drop=True)


def _probabilities(sub: pd.DataFrame, settings: CompSettings) -> np.ndarray:
    if settings.task == "binary":
        return sub[settings.label_columns[0]].astype(float).to_numpy()[:, None]
    return sub[settings.output_names].astype(float).to_numpy()


def settings_from_key(key: pd.DataFrame, sub: pd.DataFrame) -> CompSettings:
    """The schema of a competition known only by its answer key (and a submission to it)."""
    from comp.data import _as_int_if_possible

    id_column, label_columns = key.columns[0], list(key.columns[1:])
    if not label_columns:
        raise DataError(f"the answer key has only the column '{id_column}'; it needs an id and label columns")
    values = [v.strip() for v in sub[[c for c in label_columns if c in sub.columns]].to_numpy().ravel() if v.strip()]
    fmt = "labels"
    try:
        if values and any(float(v) != int(float(v)) for v in values):
            fmt = "probabilities"
    except ValueError:
        pass
    if len(label_columns) > 1:
        task, classes = "multilabel", label_columns
    else:
        seen = set(key[label_columns[0]].str.strip()) - {""}
        if fmt == "labels":
            seen |= set(values)
        classes = sorted(_as_int_if_possible(sorted(seen)), key=lambda v: (isinstance(v, str), v))
        if len(classes) < 2:
            raise DataError(
                f"the answer key's column '{label_columns[0]}' has a single value {classes!r}; nothing to score"
            )
        task = "binary" if len(classes) == 2 else "multiclass"
    return CompSettings(
        task=task,
        id_column=id_column,
        text_columns=[],
        label_columns=label_columns,
        classes=classes,
        submission_format=fmt,
    )
