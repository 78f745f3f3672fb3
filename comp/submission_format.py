"""Probabilities + thresholds -> a DataFrame shaped exactly like sample_submission, and its validation.

The submission has sample_submission's columns in its order and its ids in its order, with values of
the kind the competition scores:

- ``indicator``: one 0/1 integer column per class (multilabel, or a multiclass sample with a column
  per class);
- ``class``: one column holding a class value as train spells it (binary and multiclass);
- ``proba``: probabilities (``submission_format: probabilities``), one column per class, or the
  positive class's for a binary task.

The validation of the text written is in comp.submission_checks; comp.submission uploads it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from comp.errors import ConfigError, RunError
from comp.workspace import CompSettings

_EXAMPLES = 5  # values quoted in a message


def layout(settings: CompSettings) -> str:
    """How predictions map onto sample_submission's label columns: indicator | class | proba."""
    settings.require_schema()
    columns, names = list(settings.label_columns), settings.output_names
    single = len(columns) == 1 and settings.task in ("binary", "multiclass")
    if settings.submission_format == "probabilities":
        if settings.task == "binary" and len(columns) == 1:
            return "proba"
        if single:
            raise ConfigError(
                f"comp.yaml: submission_format is probabilities but sample_submission has the single label "
                f"column '{columns[0]}' for {len(names)} classes; set submission_format: labels"
            )
    elif single:
        return "class"
    if sorted(columns) != sorted(names):
        raise ConfigError(
            f"comp.yaml: label_columns ({', '.join(columns)}) do not match the classes "
            f"({', '.join(names)}); each label column must name one class"
        )
    return "proba" if settings.submission_format == "probabilities" else "indicator"


def threshold_vector(
    thresholds: dict[str, Any] | None, settings: CompSettings, source: str = "thresholds.json", run: str = "RUN"
) -> tuple[np.ndarray, int]:
    """Thresholds (offsets for multiclass) in class order, and min_labels, from a run's thresholds.json.

    A missing file, or a class without a tuned threshold (NaN: thresholds fitted for a probability
    metric), is refused rather than replaced by 0.5: the run's CV was measured with tuned thresholds.
    """
    names = settings.output_names
    if not thresholds:
        raise RunError(
            f"{source} is missing, so the labels cannot be decided as the run's CV was measured; "
            f"re-fit it with `comp thresholds {run}`"
        )
    if thresholds.get("task", settings.task) != settings.task:
        raise RunError(
            f"{source} was fitted for a {thresholds.get('task')} task, comp.yaml says {settings.task}; "
            f"re-fit them with `comp thresholds {run}`"
        )
    from comp.evaluation import threshold_values

    t = threshold_values(thresholds, names)
    if np.isnan(t).any():
        missing = [c for c, v in zip(names, t, strict=True) if np.isnan(v)]
        raise RunError(
            f"{source} has no tuned threshold for class(es) {', '.join(missing[:5])} (fitted for metric "
            f"{thresholds.get('metric')}, which scores probabilities); re-fit them for the competition's metric "
            f"with `comp thresholds {run} --metric {settings.metric}`"
        )
    return t, int(thresholds.get("min_labels", settings.min_labels) or 0)


def value_kind_problems(settings: CompSettings, sample: pd.DataFrame) -> list[str]:
    """Why the value kind that will be submitted (labels or probabilities) does not fit the metric or
    sample_submission.csv; empty when it fits. Kaggle marks a file of the wrong kind as an ERROR (or
    scores it meaninglessly), and the daily submission is gone either way."""

    from comp.metrics import METRICS

    kind = "probabilities" if layout(settings) == "proba" else "labels"
    problems = []
    metric = METRICS[settings.metric]
    wanted = "probabilities" if metric.needs_proba else "labels"
    if kind != wanted:
        problems.append(
            f"metric {settings.metric} scores {wanted} but submission_format is "
            f"{settings.submission_format or 'labels'}, "
            f"so the file would hold {kind}; set submission_format: {wanted} in comp.yaml"
        )
    values = sample[list(settings.label_columns)].astype(str).apply(lambda c: c.str.strip()).to_numpy().ravel()
    values = pd.Series([v for v in values if v])
    if len(values):
        numbers = pd.to_numeric(values, errors="coerce")
        fractional = bool(numbers.notna().all() and (numbers != numbers.round()).any())
        labels_like = bool(
            numbers.isna().any()
            or (numbers.notna().all() and numbers.nunique() > 1 and set(numbers.unique()) <= {0, 1})
        )
        shown = ", ".join(dict.fromkeys(values.head(50)))[:60]
        if kind == "labels" and fractional:
            problems.append(
                f"sample_submission.csv holds probabilities ({shown}) but the file would hold labels; "
                "set submission_format: probabilities in comp.yaml"
            )
        if kind == "probabilities" and labels_like:
            problems.append(
                f"sample_submission.csv holds labels ({shown}) but the file would hold probabilities; "
                "set submission_format: labels in comp.yaml"
            )
    return problems


def build_submission(
    test_ids: list[str],
    P: np.ndarray,
    settings: CompSettings,
    sample: pd.DataFrame,
    thresholds: np.ndarray | None = None,
    min_labels: int | None = None,
) -> pd.DataFrame:
    """The submission frame for test probabilities ``P`` (n_test, n_outputs), rows in ``test_ids`` order.

    Columns and ids (as strings, leading zeros kept) follow ``sample``; thresholds (n_outputs,) default
    to 0.5 (multiclass: offsets of 0, i.e. argmax).
    """

    kind = layout(settings)
    names = settings.output_names
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape != (len(test_ids), len(names)):
        raise RunError(
            f"test probabilities have shape {P.shape}, expected ({len(test_ids)}, {len(names)}) for the "
            f"test ids and classes of comp.yaml; retrain the run"
        )
    id_column = settings.id_column
    sample_ids = sample[id_column].astype(str).tolist()
    order = _align(list(map(str, test_ids)), sample_ids)
    P = P[order]
    frame = pd.DataFrame({id_column: pd.Series(sample_ids, dtype="str")})
    if kind == "proba":
        if settings.task == "binary":
            frame[settings.label_columns[0]] = P[:, 0]
        else:
            for j, name in enumerate(names):
                frame[name] = P[:, j]
    else:
        from comp.decision import apply_thresholds, default_thresholds

        if thresholds is None:
            thresholds = default_thresholds(settings.task, len(names))

        labels = apply_thresholds(
            P, thresholds, settings.task, settings.min_labels if min_labels is None else min_labels
        )
        if kind == "indicator":
            for j, name in enumerate(names):
                frame[name] = labels[:, j].astype(np.int64)
        else:
            code = labels[:, 0] if settings.task == "binary" else np.argmax(labels, axis=1)
            frame[settings.label_columns[0]] = _class_values(settings.classes, code)
    unknown = [c for c in sample.columns if c not in frame.columns]
    if unknown:
        raise ConfigError(
            f"sample_submission.csv has column(s) {', '.join(unknown)} that comp.yaml's id_column and "
            "label_columns do not name; add them to label_columns or fix the file"
        )
    return frame[list(sample.columns)]


def _align(test_ids: list[str], sample_ids: list[str]) -> np.ndarray:
    """Indices that put rows in ``test_ids`` order into ``sample_ids`` order."""
    index = {v: i for i, v in enumerate(test_ids)}
    if len(index) != len(test_ids):
        dup = sorted(v for v, n in Counter(test_ids).items() if n > 1)
        raise RunError(f"the run's test probabilities repeat ids {listed(dup)}; retrain the run")
    missing = [v for v in sample_ids if v not in index]
    extra = sorted(set(test_ids) - set(sample_ids))
    if missing or extra:
        raise RunError(
            f"the run's test ids differ from sample_submission.csv's ({len(missing)} missing: "
            f"{listed(missing)}; {len(extra)} not in the sample: {listed(extra)}); "
            "retrain the run on the current data/"
        )
    return np.array([index[v] for v in sample_ids], dtype=np.int64)


def _class_values(classes: list[Any], code: np.ndarray):
    """Class values as train spells them: an int column when every class is an int, else strings."""

    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return np.asarray(classes, dtype=np.int64)[code]
    return pd.Series([str(classes[i]) for i in code], dtype="str")


def submission_text(frame: pd.DataFrame) -> str:
    """The exact CSV text written for ``frame`` (UTF-8, no index, floats in shortest round-trip form)."""
    return frame.to_csv(index=False, lineterminator="\n")


def listed(values, limit: int = _EXAMPLES) -> str:
    """The first ``limit`` values, comma-separated, and "..." when there are more."""
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")
