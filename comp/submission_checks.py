"""Validation of a submission as Kaggle reads it: the CSV text that is written, not the frame, so a
value pandas would write differently from what was meant cannot slip through. Every problem names
the column, the lines and the ids at fault."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from comp.errors import DataError
from comp.submission_format import layout, listed, submission_text
from comp.workspace import CompSettings


def parse_submission(text: str) -> pd.DataFrame:
    """Read submission CSV text as strings, as `comp.data.read_csv` reads the competition files."""

    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise DataError(f"the submission is not a valid CSV ({detail})") from None
    return frame


def check_submission(
    frame: pd.DataFrame, sample: pd.DataFrame, settings: CompSettings, reference: str = "sample_submission.csv"
) -> list[str]:
    """Every problem of ``frame`` (strings, as read from the CSV) against ``sample`` (named ``reference``
    in messages) and comp.yaml; an empty list when it is valid."""
    problems: list[str] = []
    columns, expected = list(frame.columns), list(sample.columns)
    if columns != expected:
        missing = [c for c in expected if c not in columns]
        extra = [c for c in columns if c not in expected]
        if missing or extra:
            problems.append(
                f"columns differ from {reference}'s (missing: {', '.join(missing) or 'none'}; "
                f"unexpected: {', '.join(extra) or 'none'})"
            )
        else:
            problems.append(f"columns are in the order {', '.join(columns)}; {reference} has {', '.join(expected)}")
        return problems
    id_column = settings.id_column
    if len(frame) != len(sample):
        problems.append(f"{len(frame)} rows, {reference} has {len(sample)}")
    ids, sample_ids = frame[id_column].tolist(), sample[id_column].tolist()
    if ids != sample_ids:
        problems.append(_id_problem(ids, sample_ids, id_column, reference))
    blank = frame.apply(lambda s: s.str.strip() == "")
    for column in frame.columns:
        rows = np.flatnonzero(blank[column].to_numpy())
        if rows.size:
            problems.append(f"column '{column}' is empty on {_where(frame, rows, id_column)}")
    allowed_desc, ok = _allowed(settings)
    for column in settings.label_columns:
        values = frame[column].str.strip()
        bad = np.flatnonzero(~ok(values).to_numpy() & ~blank[column].to_numpy())
        if bad.size:
            shown = listed([repr(v) for v in dict.fromkeys(values.iloc[bad])])
            problems.append(
                f"column '{column}' has values other than {allowed_desc} ({shown}) on {_where(frame, bad, id_column)}"
            )
    return problems


def validate_submission(frame: pd.DataFrame, sample: pd.DataFrame, settings: CompSettings) -> str:
    """Raise DataError naming the rows and columns at fault; return the CSV text that was checked."""
    text = submission_text(frame)
    problems = check_submission(parse_submission(text), sample, settings)
    if problems:
        raise DataError(f"the submission is invalid, nothing was written or uploaded: {'; '.join(problems)}")
    return text


def validate_file(path: str | Path, sample: pd.DataFrame, settings: CompSettings) -> None:
    """Validate a submission CSV on disk (what Kaggle would read)."""
    from comp.data import read_csv

    problems = check_submission(read_csv(path), sample, settings)
    if problems:
        raise DataError(f"{Path(path).name} is invalid: {'; '.join(problems)}")


def _allowed(settings: CompSettings):

    kind = layout(settings)
    if kind == "proba":

        def ok(values):
            numbers = pd.to_numeric(values, errors="coerce")
            return numbers.notna() & (numbers >= 0) & (numbers <= 1)

        return "probabilities in [0, 1]", ok
    allowed = ["0", "1"] if kind == "indicator" else [str(c) for c in settings.classes]
    return listed(allowed, 10), lambda values: values.isin(allowed)


def _id_problem(ids: list[str], sample_ids: list[str], id_column: str, reference: str) -> str:
    seen, dup = set(), []
    for v in ids:
        if v in seen:
            dup.append(v)
        seen.add(v)
    if dup:
        return f"'{id_column}' repeats ids {listed(list(dict.fromkeys(dup)))}"
    expected = set(sample_ids)
    missing = [v for v in sample_ids if v not in seen]
    extra = [v for v in ids if v not in expected]
    if missing or extra:
        return (
            f"'{id_column}' differs from {reference}'s: {len(missing)} id(s) missing "
            f"({listed(missing)}), {len(extra)} unknown ({listed(extra)})"
        )
    first = next(i for i, (a, b) in enumerate(zip(ids, sample_ids, strict=True)) if a != b)
    return (
        f"ids are not in {reference}'s order: line {first + 2} has '{ids[first]}', "
        f"{reference} has '{sample_ids[first]}'"
    )


def _where(frame: pd.DataFrame, rows: np.ndarray, id_column: str) -> str:
    lines = listed((rows + 2).tolist())  # +2: the header and 1-based lines
    return f"{rows.size} line(s): {lines} (ids {listed(frame[id_column].iloc[rows].tolist())})"
