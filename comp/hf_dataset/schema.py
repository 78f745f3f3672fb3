"""Which features of a Hugging Face dataset are the splits, the id, the texts and the label, and their frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from comp.errors import DataError

ID = "id"

# a plain (non-ClassLabel) feature is taken as the label only under one of these names, in this order
LABEL_NAMES = (
    "label",
    "labels",
    "target",
    "targets",
    "class",
    "category",
    "emotion",
    "emotions",
    "sentiment",
)
_STRING_DTYPES = ("string", "large_string")
_INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
SUPPORTED = (
    "supported label features: ClassLabel (multiclass), Sequence/List of ClassLabel (multilabel), "
    f"or an int/str/bool feature (or a list of them) named one of {', '.join(LABEL_NAMES)}"
)


@dataclass
class Label:
    name: str
    kind: str  # classlabel | classlabel_list | value | value_list
    names: list[str] | None = None  # class names for the list kinds and ClassLabel

    @property
    def multilabel(self) -> bool:
        return self.kind.endswith("_list")


def choose_splits(dsd, train_splits: list[str] | None, test_split: str | None, spec: str) -> tuple[list[str], str]:
    available = list(dsd.keys())
    train_names = list(train_splits or ["train"])
    for split in [*train_names, *([test_split] if test_split else [])]:
        if split not in dsd:
            raise DataError(
                f"Hugging Face dataset {spec} has no split '{split}'; its splits are: {', '.join(available)}"
            )
    if test_split is None:
        test_split = next((s for s in ("test", "validation") if s in dsd and s not in train_names), None)
        if test_split is None:
            raise DataError(
                f"Hugging Face dataset {spec} has no 'test' or 'validation' split for the test set "
                f"(splits: {', '.join(available)}); name one with test_split"
            )
    if test_split in train_names:
        raise DataError(f"split '{test_split}' of {spec} cannot be both a train split and the test split")
    return train_names, test_split


def find_label(features, label_column: str | None, spec: str) -> Label:
    if label_column is not None:
        if label_column not in features:
            raise DataError(
                f"Hugging Face dataset {spec} has no feature '{label_column}'; features: {describe(features)}"
            )
        label = label_kind(label_column, features[label_column], any_name=True)
        if label is None:
            raise DataError(
                f"feature '{label_column}' of {spec} ({features[label_column]}) cannot be a label; {SUPPORTED}"
            )
        return label
    class_labels = [lab for c, f in features.items() if (lab := label_kind(c, f)) and lab.kind.startswith("classlabel")]
    if len(class_labels) > 1:
        named = [lab for lab in class_labels if lab.name.lower() in LABEL_NAMES]
        if len(named) != 1:
            raise DataError(
                f"Hugging Face dataset {spec} has several ClassLabel features "
                f"({', '.join(lab.name for lab in class_labels)}); pick one with label_column"
            )
        class_labels = named
    if class_labels:
        return class_labels[0]
    by_name = {c.lower(): c for c in features}
    for candidate in LABEL_NAMES:
        if candidate in by_name and (lab := label_kind(by_name[candidate], features[by_name[candidate]])):
            return lab
    raise DataError(
        f"Hugging Face dataset {spec} has no recognisable label feature (features: {describe(features)}); {SUPPORTED}"
    )


def label_kind(name: str, feature, any_name: bool = False) -> Label | None:
    from datasets import ClassLabel, Value

    if isinstance(feature, ClassLabel):
        return Label(name, "classlabel", list(feature.names))
    inner = list_item(feature)
    if isinstance(inner, ClassLabel):
        return Label(name, "classlabel_list", list(inner.names))
    if not (any_name or name.lower() in LABEL_NAMES):
        return None
    plain = (*_STRING_DTYPES, *_INT_DTYPES, "bool")
    if isinstance(feature, Value) and feature.dtype in plain:
        return Label(name, "value")
    if isinstance(inner, Value) and inner.dtype in plain:
        return Label(name, "value_list")
    return None


def list_item(feature):
    """The item feature of a Sequence/List/LargeList, else None."""
    from datasets import LargeList, List, Sequence

    if isinstance(feature, (List, LargeList, Sequence)):
        return feature.feature
    return None


def is_string(feature) -> bool:
    from datasets import Value

    return isinstance(feature, Value) and feature.dtype in _STRING_DTYPES


def describe(features) -> str:
    return ", ".join(f"{c} ({f})" for c, f in features.items()) or "none"


def list_values(dsd, splits: list[str], column: str) -> list[str]:
    """Class names of a list-of-values label: every value seen, sorted."""
    values = set()
    for split in splits:
        if column in dsd[split].column_names:
            for row in dsd[split][column]:
                values.update(v for v in row or () if v is not None and v != "")
    if not values:
        raise DataError(f"the label feature '{column}' holds no values in splits {', '.join(splits)}")
    return [str(v) for v in sorted(values)]


def split_frame(ds, split: str, text_cols: list[str], label: Label, id_col: str | None, spec: str):
    """-> (frame with __generated_id, __dataset_id and texts; label columns; boolean Series of unlabelled rows)."""

    has_id = id_col is not None and id_col in ds.column_names
    has_label = label.name in ds.column_names
    wanted = [*text_cols, *([id_col] if has_id else []), *([label.name] if has_label else [])]
    raw = ds.select_columns(list(dict.fromkeys(wanted))).to_pandas()
    n = len(raw)
    frame = raw[text_cols].copy()
    frame.insert(0, "__generated_id", [f"{split}_{i:06d}" for i in range(n)])
    if has_id:
        frame.insert(1, "__dataset_id", raw[id_col])
    if not has_label:
        cols = label.names if label.multilabel else [label.name]
        return frame, pd.DataFrame(0, index=frame.index, columns=cols), pd.Series(True, index=frame.index)

    values = raw[label.name]
    if not label.multilabel:
        missing = values.isna()
        if label.kind == "classlabel":
            missing |= values.eq(-1)
        elif not pd.api.types.is_numeric_dtype(values):
            missing |= values.eq("")
        return frame, pd.DataFrame({label.name: values}), missing

    index = {v: j for j, v in enumerate(label.names)}
    matrix = np.zeros((n, len(label.names)), dtype=np.int64)
    missing = np.zeros(n, dtype=bool)
    for i, row in enumerate(values):
        if row is None:
            missing[i] = True
            continue
        for v in row:
            j = int(v) if label.kind == "classlabel_list" else index.get(str(v))
            if j is None or not 0 <= j < len(label.names):
                raise DataError(
                    f"row {i} of split '{split}' of {spec}: label value {v!r} is not a class of '{label.name}'"
                )
            matrix[i, j] = 1
    labels = pd.DataFrame(matrix, columns=label.names, index=frame.index)
    return frame, labels, pd.Series(missing, index=frame.index)


def base_frame(frame, id_key: str, text_cols: list[str]):
    out = frame[[id_key, *text_cols]].rename(columns={id_key: ID})
    return out.reset_index(drop=True)


def plain_values(values):
    """Integral floats (ints that met a missing value) back to ints; bools to 0/1."""

    if pd.api.types.is_bool_dtype(values):
        return values.astype("int64")
    if pd.api.types.is_float_dtype(values) and values.notna().all() and (values % 1 == 0).all():
        return values.astype("int64")
    return values


def labels_are_real(labels, missing, label: Label) -> bool:
    if bool(missing.any()):
        return False
    # a multilabel test split without labels comes as empty lists
    return not (label.multilabel and int(labels.to_numpy().sum()) == 0)
