"""Read the competition CSVs, infer the schema, validate, and build texts and label matrices.

Every CSV is read with all columns as strings (so ids keep leading zeros and a tweet that says "NA"
stays a tweet); label columns are converted explicitly, with errors that name the column and row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comp.errors import DataError
from comp.workspace import CompSettings, Workspace

SCHEMA_FIELDS = ("task", "id_column", "text_columns", "label_columns", "classes", "submission_format")
_EXAMPLES = 5


def read_csv(path: str | Path, shown: str | None = None) -> pd.DataFrame:
    """Read a CSV as strings; one-line DataError for a missing, empty, non-UTF-8 or malformed file.

    ``shown`` is how messages name the file (default: its path).
    """

    path = Path(path)
    name = shown or str(path)
    if not path.is_file():
        raise DataError(f"{name} not found; run `comp fetch` (or `comp fetch --from DIR|ZIP`) first")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{name} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "re-save it as UTF-8 CSV"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty; expected a CSV with a header row") from None
    except (pd.errors.ParserError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise DataError(f"{name} is not a valid CSV ({detail}); check the file") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame.columns) < 2:
        raise DataError(
            f"{name} is not a CSV with several columns (found only {list(frame.columns)!r}); "
            "check the file and its delimiter (comma expected)"
        )
    return frame


def _require_columns(frame: pd.DataFrame, columns: list[str], path: Path, hint: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        found = ", ".join(frame.columns)
        names = ", ".join(f"'{c}'" for c in missing)
        raise DataError(f"{path.name} has no column {names}; columns are: {found}. {hint}")


def _is_numeric(values: pd.Series) -> bool:

    nonblank = values[values.str.strip() != ""]
    return len(nonblank) > 0 and pd.to_numeric(nonblank, errors="coerce").notna().all()


def _as_int_if_possible(values: list[str]) -> list[Any]:
    try:
        as_int = [int(v) for v in values]
    except ValueError:
        return list(values)
    return as_int if all(str(i) == v.strip() for i, v in zip(as_int, values, strict=True)) else list(values)


def infer_schema(train: pd.DataFrame, test: pd.DataFrame, sample: pd.DataFrame) -> dict[str, Any]:
    """Infer id, text and label columns, task, class order and submission format.

    The id is sample_submission's first column; the labels are its other columns; the text columns
    are test's non-numeric columns other than the id.
    """
    id_column = sample.columns[0]
    label_columns = list(sample.columns[1:])
    if not label_columns:
        raise DataError(
            f"sample_submission.csv has only the column '{id_column}'; it needs an id column and at "
            "least one label column"
        )
    hint = "Set id_column / text_columns / label_columns in comp.yaml if the inference is wrong."
    for frame, name in ((train, "train.csv"), (test, "test.csv")):
        _require_columns(frame, [id_column], Path(name), hint)
    _require_columns(train, label_columns, Path("train.csv"), hint)
    text_columns = [c for c in test.columns if c != id_column and c not in label_columns and not _is_numeric(test[c])]
    if not text_columns:
        raise DataError(
            f"test.csv has no text column (columns: {', '.join(test.columns)}); set text_columns in comp.yaml"
        )
    _require_columns(train, text_columns, Path("train.csv"), hint)

    if len(label_columns) > 1:
        task, classes = "multilabel", list(label_columns)
    else:
        values = sorted(set(train[label_columns[0]].str.strip()) - {""})
        values = sorted(_as_int_if_possible(values), key=lambda v: (isinstance(v, str), v))
        if len(values) < 2:
            raise DataError(f"train.csv column '{label_columns[0]}' has a single value {values!r}; nothing to learn")
        task = "binary" if len(values) == 2 else "multiclass"
        classes = values
    sample_values = sample[label_columns].to_numpy().ravel()
    submission_format = "labels"
    numeric = [v for v in sample_values if v.strip()]
    try:
        if any(float(v) != int(float(v)) for v in numeric):
            submission_format = "probabilities"
    except ValueError:
        pass
    return {
        "task": task,
        "id_column": id_column,
        "text_columns": text_columns,
        "label_columns": label_columns,
        "classes": classes,
        "submission_format": submission_format,
    }


def fill_schema(settings: CompSettings, inferred: dict[str, Any]) -> list[str]:
    """Set the schema fields comp.yaml leaves empty; return the names of the fields filled."""
    filled = []
    for name in SCHEMA_FIELDS:
        if getattr(settings, name) is None:
            setattr(settings, name, inferred[name])
            filled.append(name)
    return filled


@dataclass
class Competition:
    """The validated competition data: texts, ids and indicator label matrix in class order."""

    settings: CompSettings
    train: pd.DataFrame
    test: pd.DataFrame
    sample: pd.DataFrame
    train_texts: list[str]
    test_texts: list[str]
    Y: np.ndarray  # (n_train, n_outputs) uint8 indicators

    @property
    def train_ids(self) -> list[str]:
        return self.train[self.settings.id_column].tolist()

    @property
    def test_ids(self) -> list[str]:
        return self.test[self.settings.id_column].tolist()

    @property
    def classes(self) -> list[str]:
        return self.settings.output_names


def _join_texts(frame: pd.DataFrame, columns: list[str], separator: str) -> list[str]:
    if len(columns) == 1:
        return frame[columns[0]].tolist()
    parts = frame[columns].to_numpy()
    return [separator.join(p for p in row if p.strip()) for row in parts]


def _examples(values) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:_EXAMPLES])
    return shown + (", ..." if len(values) > _EXAMPLES else "")


def _check_ids(frame: pd.DataFrame, id_column: str, path: Path) -> None:
    ids = frame[id_column]
    blank = ids.str.strip() == ""
    if blank.any():
        rows = (np.flatnonzero(blank.to_numpy()) + 2).tolist()  # +2: header and 1-based lines
        raise DataError(f"{path.name} has empty '{id_column}' values (lines {_examples(rows)}); every row needs an id")
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise DataError(
            f"{path.name} has {len(duplicated)} duplicate '{id_column}' value(s): {_examples(duplicated)}; "
            "ids must be unique"
        )


def _check_texts(texts: list[str], frame: pd.DataFrame, id_column: str, path: Path, allow: bool) -> None:
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty and not allow:
        ids = frame[id_column].iloc[empty]
        raise DataError(
            f"{path.name} has {len(empty)} row(s) with empty or missing text (ids {_examples(ids)}); "
            "fix them, or set allow_empty_text: true in comp.yaml to keep them as empty strings"
        )


def label_matrix(train: pd.DataFrame, settings: CompSettings, path: Path) -> np.ndarray:
    """Indicator matrix (n_samples, n_outputs) from train's label columns."""
    id_column = settings.id_column
    if settings.task == "multilabel":
        values = train[settings.label_columns].apply(lambda s: s.str.strip())
        bad = ~values.isin(["0", "1"])
        if bad.to_numpy().any():
            column = values.columns[bad.any(axis=0).to_numpy()][0]
            rows = bad[column].to_numpy()
            shown = _examples(sorted(set(values[column][rows])))
            ids = _examples(train[id_column][rows])
            raise DataError(
                f"{path.name} column '{column}' has values other than 0/1 ({shown}; ids {ids}); "
                "multilabel label columns must hold 0 or 1"
            )
        return (values.to_numpy() == "1").astype(np.uint8)
    column = settings.label_columns[0]
    raw = train[column].str.strip()
    names = [str(c) for c in settings.classes]
    index = {name: i for i, name in enumerate(names)}
    codes = raw.map(index)
    if codes.isna().any():
        rows = codes.isna().to_numpy()
        raise DataError(
            f"{path.name} column '{column}' has values that are not classes in comp.yaml "
            f"({_examples(sorted(set(raw[rows])))}; ids {_examples(train[id_column][rows])}); "
            f"classes are: {', '.join(names)}"
        )
    codes = codes.to_numpy(dtype=np.int64)
    if settings.task == "binary":
        return (codes == 1).astype(np.uint8)[:, None]
    Y = np.zeros((len(codes), len(names)), dtype=np.uint8)
    Y[np.arange(len(codes)), codes] = 1
    return Y


def load_competition(ws: Workspace, settings: CompSettings | None = None) -> Competition:
    """Read and validate train, test and sample_submission against comp.yaml."""
    settings = settings or ws.load_settings()
    settings.require_schema()
    train, test, sample = read_csv(ws.train_csv), read_csv(ws.test_csv), read_csv(ws.sample_submission_csv)
    return build_competition(settings, train, test, sample, ws.data_dir)


def build_competition(
    settings: CompSettings, train: pd.DataFrame, test: pd.DataFrame, sample: pd.DataFrame, data_dir: Path
) -> Competition:
    hint = "Fix the file or the column names in comp.yaml."
    train_path, test_path = data_dir / "train.csv", data_dir / "test.csv"
    sample_path = data_dir / "sample_submission.csv"
    id_column = settings.id_column
    _require_columns(train, [id_column, *settings.text_columns, *settings.label_columns], train_path, hint)
    _require_columns(test, [id_column, *settings.text_columns], test_path, hint)
    _require_columns(sample, [id_column, *settings.label_columns], sample_path, hint)
    if settings.group_column:
        _require_columns(train, [settings.group_column], train_path, "Fix group_column in comp.yaml.")
    for frame, path in ((train, train_path), (test, test_path), (sample, sample_path)):
        if frame.empty:
            raise DataError(f"{path.name} has a header but no rows")
        _check_ids(frame, id_column, path)
    test_ids, sample_ids = set(test[id_column]), set(sample[id_column])
    if test_ids != sample_ids:
        only_test, only_sample = sorted(test_ids - sample_ids), sorted(sample_ids - test_ids)
        raise DataError(
            f"test.csv and sample_submission.csv have different ids: {len(only_test)} only in test "
            f"({_examples(only_test)}), {len(only_sample)} only in sample_submission "
            f"({_examples(only_sample)}); re-download the competition files"
        )
    train_texts = _join_texts(train, settings.text_columns, settings.text_separator)
    test_texts = _join_texts(test, settings.text_columns, settings.text_separator)
    _check_texts(train_texts, train, id_column, train_path, settings.allow_empty_text)
    _check_texts(test_texts, test, id_column, test_path, settings.allow_empty_text)
    Y = label_matrix(train, settings, train_path)
    return Competition(settings, train, test, sample, train_texts, test_texts, Y)


def read_texts(path: str | Path, settings) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of a test-shaped CSV (the id and text columns of comp.yaml), validated."""
    path = Path(path)
    frame = read_csv(path)
    _require_columns(frame, [settings.id_column, *settings.text_columns], path, "It needs the columns test.csv has.")
    if frame.empty:
        raise DataError(f"{path.name} has a header but no rows")
    _check_ids(frame, settings.id_column, path)
    texts = _join_texts(frame, settings.text_columns, settings.text_separator)
    _check_texts(texts, frame, settings.id_column, path, settings.allow_empty_text)
    return frame[settings.id_column].tolist(), texts
