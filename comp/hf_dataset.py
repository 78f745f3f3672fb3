"""Turn a Hugging Face dataset into a Kaggle-style competition download, for practice competitions.

``export_hf_dataset("google-research-datasets/go_emotions:simplified", dest)`` writes into ``dest``:

- ``train.csv``: ``id``, the text column(s), the label column(s)
- ``test.csv``: ``id``, the text column(s)
- ``sample_submission.csv``: ``id`` + the label column(s), all zeros, in test order
- ``test_labels.csv``: the answer key (sample_submission's shape, true values), when the test labels are real

Labels: a ``ClassLabel`` feature becomes one column of class indices (multiclass, as Kaggle ships
it); a list of ``ClassLabel`` becomes one 0/1 column per class name (multilabel); an int/str/bool
feature with a label-like name is copied as it is (multiclass).

The hub is tried first; without a network the dataset is read from the local cache.
"""

from __future__ import annotations

import ast
import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comp.atomic import write_csv
from comp.errors import DataError
from comp.models.hf import hub

TRAIN_CSV = "train.csv"
TEST_CSV = "test.csv"
SAMPLE_SUBMISSION_CSV = "sample_submission.csv"
TEST_LABELS_CSV = "test_labels.csv"
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
_SUPPORTED = (
    "supported label features: ClassLabel (multiclass), Sequence/List of ClassLabel (multilabel), "
    f"or an int/str/bool feature (or a list of them) named one of {', '.join(LABEL_NAMES)}"
)


@dataclass
class ExportSummary:
    """What `export_hf_dataset` wrote and the choices it made."""

    spec: str
    source: str  # "local folder", "saved DatasetDict", "hub" or "local cache (offline)"
    train_splits: list[str]
    test_split: str
    task: str  # multiclass | multilabel
    label_feature: str
    label_columns: list[str]  # label columns of train.csv / sample_submission.csv
    class_names: list[str] | None  # ClassLabel names (multiclass: index -> name)
    text_columns: list[str]
    id_source: str  # "dataset" (its id column) or "generated" ({split}_{i:06d})
    n_train: int
    n_test: int
    has_answer_key: bool
    files: list[Path] = field(default_factory=list)
    dropped_features: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Short human-readable lines for the CLI."""
        out = [
            f"{self.spec} ({self.source}): train = {' + '.join(self.train_splits)} ({self.n_train} rows), "
            f"test = {self.test_split} ({self.n_test} rows)",
            f"{self.task}: label feature '{self.label_feature}' -> {len(self.label_columns)} label column(s); "
            f"text: {', '.join(self.text_columns)}; ids {self.id_source}",
        ]
        if self.dropped_features:
            out.append(f"features left out: {', '.join(self.dropped_features)}")
        out.append(
            "answer key: "
            + (TEST_LABELS_CSV if self.has_answer_key else "none (the test labels are not real)")
        )
        return out + self.notes


@dataclass
class _Label:
    name: str
    kind: str  # classlabel | classlabel_list | value | value_list
    names: list[str] | None = None  # class names for the list kinds and ClassLabel

    @property
    def multilabel(self) -> bool:
        return self.kind.endswith("_list")


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split "NAME" or "NAME:CONFIG" into (name, config). An existing folder is a name even with a colon."""
    spec = spec.strip()
    if not spec:
        raise DataError("empty Hugging Face dataset name: pass --hf NAME or --hf NAME:CONFIG")
    if ":" not in spec or Path(spec).expanduser().is_dir():
        return spec, None
    name, _, config = spec.rpartition(":")
    if not name or not config:
        raise DataError(f"Hugging Face dataset '{spec}' is not NAME or NAME:CONFIG")
    return name, config


def export_hf_dataset(
    spec: str,
    dest: Path,
    *,
    train_splits: list[str] | None = None,
    test_split: str | None = None,
    label_column: str | None = None,
) -> ExportSummary:
    """Write train.csv, test.csv, sample_submission.csv (and test_labels.csv) for ``spec`` into ``dest``.

    ``train_splits`` defaults to ["train"]; ``test_split`` to "test", else "validation".
    ``label_column`` picks the label feature when the dataset has several candidates.
    Nothing is written unless every file can be built.
    """
    import pandas as pd

    name, config = parse_spec(spec)
    dsd, source = _load(name, config, spec)
    train_names, test_name = _choose_splits(dsd, train_splits, test_split, spec)
    features = dsd[train_names[0]].features
    label = _find_label(features, label_column, spec)
    id_col = next((c for c in features if c == ID), None) or next(
        (c for c in features if c.lower() == ID), None
    )
    if id_col == label.name:
        id_col = None
    text_cols = [c for c, f in features.items() if _is_string(f) and c not in (id_col, label.name)]
    if not text_cols:
        raise DataError(
            f"Hugging Face dataset {spec} has no string feature to use as text "
            f"(features: {_describe(features)}); a text competition needs at least one Value('string') column"
        )
    for split in [*train_names, test_name]:
        missing = [c for c in text_cols if c not in dsd[split].column_names]
        if missing:
            raise DataError(f"split '{split}' of {spec} lacks the text feature(s) {', '.join(missing)}")
    if label.kind == "value_list":
        label.names = _list_values(dsd, [*train_names, test_name], label.name)
    label_cols = label.names if label.multilabel else [label.name]
    clash = sorted(set(label_cols) & {ID, *text_cols})
    if clash:
        raise DataError(
            f"Hugging Face dataset {spec}: label column(s) {', '.join(map(str, clash))} would clash with the id/text "
            "columns of the CSVs; rename the feature or the classes first"
        )

    notes: list[str] = []
    train_parts = [_split_frame(dsd[s], s, text_cols, label, id_col, spec) for s in train_names]
    test_part = _split_frame(dsd[test_name], test_name, text_cols, label, id_col, spec)

    ids_ok = id_col is not None and all(id_col in dsd[s].column_names for s in [*train_names, test_name])
    if ids_ok:
        all_ids = pd.concat([p[0]["__dataset_id"] for p in [*train_parts, test_part]], ignore_index=True)
        ids_ok = bool(all_ids.notna().all() and all_ids.is_unique)
        if not ids_ok:
            notes.append(
                f"the '{id_col}' feature is not unique across the exported splits; ids were generated"
            )
    id_key = "__dataset_id" if ids_ok else "__generated_id"

    train_frames, dropped_rows = [], 0
    for frame, labels, missing in train_parts:
        dropped_rows += int(missing.sum())
        train_frames.append(pd.concat([_base(frame, id_key, text_cols), labels], axis=1)[~missing.to_numpy()])
    train = pd.concat(train_frames, ignore_index=True)
    if dropped_rows:
        notes.append(f"{dropped_rows} train row(s) without a label were left out")
    if train.empty:
        raise DataError(f"the train split(s) {', '.join(train_names)} of {spec} have no labelled rows")
    if not label.multilabel:
        train[label.name] = _plain_values(train[label.name])

    test_frame, test_labels, test_missing = test_part
    test = _base(test_frame, id_key, text_cols)
    sample = pd.DataFrame({ID: test[ID]})
    for col in label_cols:
        sample[col] = 0
    has_key = _labels_are_real(test_labels, test_missing, label)
    if has_key:
        answers = pd.concat([test[[ID]], test_labels], axis=1)
        if not label.multilabel:
            answers[label.name] = _plain_values(answers[label.name])
    else:
        n_missing = int(test_missing.sum())
        why = (
            "has no labels"
            if n_missing in (0, len(test))
            else f"lacks labels for {n_missing} of {len(test)} rows"
        )
        hint = ""
        if test_name != "validation" and "validation" in dsd and "validation" not in train_names:
            hint = "; use the validation split as the test set (test_split='validation') to get one"
        notes.append(f"the '{test_name}' split {why}, so there is no answer key ({TEST_LABELS_CSV}){hint}")

    dest = Path(dest)
    files = [dest / TRAIN_CSV, dest / TEST_CSV, dest / SAMPLE_SUBMISSION_CSV]
    write_csv(files[0], train)
    write_csv(files[1], test)
    write_csv(files[2], sample)
    stale_key = dest / TEST_LABELS_CSV
    if has_key:
        write_csv(stale_key, answers)
        files.append(stale_key)
    elif stale_key.exists():
        # an old answer key would score submissions against another test set
        stale_key.unlink()
        notes.append(f"removed the old {TEST_LABELS_CSV} from {dest}")

    kept = {id_col, label.name, *text_cols}
    return ExportSummary(
        spec=spec,
        source=source,
        train_splits=train_names,
        test_split=test_name,
        task="multilabel" if label.multilabel else "multiclass",
        label_feature=label.name,
        label_columns=[str(c) for c in label_cols],
        class_names=list(label.names) if label.names else None,
        text_columns=text_cols,
        id_source="dataset" if ids_ok else "generated",
        n_train=len(train),
        n_test=len(test),
        has_answer_key=has_key,
        files=files,
        dropped_features=[c for c in features if c not in kept],
        notes=notes,
    )


# ---------------------------------------------------------------- loading


def _load(name: str, config: str | None, spec: str) -> tuple[Any, str]:
    """Return (DatasetDict, source). A local folder first, then the hub, then the cache offline."""
    import datasets

    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            if config:
                raise DataError(f"{name} was saved with save_to_disk and has no configs; drop ':{config}'")
            return datasets.load_from_disk(str(path)), "saved DatasetDict"
        if (path / "state.json").is_file():
            raise DataError(
                f"{name} holds a single Dataset saved with save_to_disk; save a DatasetDict with "
                "'train' and 'test' splits instead"
            )
        return _as_dict(_call_load(datasets, name, config, spec, offline=False), spec), "local folder"

    offline = bool(datasets.config.HF_HUB_OFFLINE)
    if not offline and not hub.hub_reachable(datasets.config.HF_ENDPOINT):
        offline = True
    if not offline:
        try:
            return _as_dict(_call_load(datasets, name, config, spec, offline=False), spec), "hub"
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
    with _offline_mode(datasets):
        return _as_dict(_call_load(datasets, name, config, spec, offline=True), spec), "local cache (offline)"


def _call_load(datasets, name: str, config: str | None, spec: str, *, offline: bool):
    """``datasets.load_dataset`` with its usual failures turned into one-line DataErrors."""
    try:
        return datasets.load_dataset(name, config)
    except ValueError as exc:
        raise _config_error(str(exc), name, config, spec, offline) from None
    except Exception as exc:
        if offline and _is_connection_error(exc):
            raise DataError(_not_cached(name, config)) from None
        if isinstance(exc, datasets.exceptions.DatasetNotFoundError):
            raise DataError(
                f"Hugging Face dataset {spec} was not found on the hub (or it is gated or private): "
                "check the name, or point --hf at a local folder"
            ) from None
        if isinstance(exc, (datasets.exceptions.DatasetsError, FileNotFoundError)):
            raise DataError(f"cannot read Hugging Face dataset {spec}: {_first_line(exc)}") from None
        raise


def _config_error(message: str, name: str, config: str | None, spec: str, offline: bool) -> Exception:
    available = _listed(message, r"Available(?: configs in the cache)?: (\[.*?\])") or _listed(
        message, r"available configs: (\[.*?\])"
    )
    if "Config name is missing" in message:
        return DataError(
            f"Hugging Face dataset {name} has several configs; pick one with --hf {name}:CONFIG "
            f"(available: {', '.join(available or ['?'])})"
        )
    if "not found. Available" in message:
        return DataError(
            f"Hugging Face dataset {name} has no config '{config}'; available configs: {', '.join(available)}"
        )
    if "Couldn't find cache" in message:
        return DataError(_not_cached(name, config, available))
    multiple = re.search(r"multiple '.*?' configurations in the cache: ([^\n]*)", message)
    if multiple:
        return DataError(
            f"the local cache holds several configs of {name} ({multiple.group(1)}); pick one with --hf {name}:CONFIG"
        )
    return DataError(
        f"cannot read Hugging Face dataset {spec}: {message.splitlines()[0] if message else 'ValueError'}"
    )


def _not_cached(name: str, config: str | None, cached: list[str] | None = None) -> str:
    shown = f"{name}:{config}" if config else name
    args = f"'{name}', '{config}'" if config else f"'{name}'"
    others = f" (the cache holds its configs {', '.join(cached)})" if cached else ""
    return (
        f"Hugging Face dataset {shown} is not in the local cache{others} and the hub cannot be reached: download it once "
        f'where there is internet (python -c "import datasets; datasets.load_dataset({args})") '
        "or point --hf at a local folder"
    )


def _as_dict(loaded, spec: str):
    if not hasattr(loaded, "keys"):
        raise DataError(
            f"Hugging Face dataset {spec} loaded as a single split; it needs 'train' and 'test' splits"
        )
    return loaded


@contextlib.contextmanager
def _offline_mode(datasets):
    """Offline mode for datasets and huggingface_hub. Both read HF_HUB_OFFLINE once, at import."""
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _is_connection_error(exc: BaseException | None) -> bool:
    kinds: list[type] = [ConnectionError, TimeoutError]
    for module, attr in (("httpx", "TransportError"), ("requests.exceptions", "ConnectionError")):
        with contextlib.suppress(ImportError, AttributeError):
            kinds.append(getattr(__import__(module, fromlist=[attr]), attr))
    seen = 0
    while exc is not None and seen < 10:  # the hub client wraps network errors a few levels deep
        if isinstance(exc, tuple(kinds)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


# ---------------------------------------------------------------- schema


def _choose_splits(
    dsd, train_splits: list[str] | None, test_split: str | None, spec: str
) -> tuple[list[str], str]:
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


def _find_label(features, label_column: str | None, spec: str) -> _Label:
    if label_column is not None:
        if label_column not in features:
            raise DataError(
                f"Hugging Face dataset {spec} has no feature '{label_column}'; features: {_describe(features)}"
            )
        label = _label_kind(label_column, features[label_column], any_name=True)
        if label is None:
            raise DataError(
                f"feature '{label_column}' of {spec} ({features[label_column]}) cannot be a label; {_SUPPORTED}"
            )
        return label
    class_labels = [
        lab for c, f in features.items() if (lab := _label_kind(c, f)) and lab.kind.startswith("classlabel")
    ]
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
        if candidate in by_name and (lab := _label_kind(by_name[candidate], features[by_name[candidate]])):
            return lab
    raise DataError(
        f"Hugging Face dataset {spec} has no recognisable label feature (features: {_describe(features)}); {_SUPPORTED}"
    )


def _label_kind(name: str, feature, any_name: bool = False) -> _Label | None:
    from datasets import ClassLabel, Value

    if isinstance(feature, ClassLabel):
        return _Label(name, "classlabel", list(feature.names))
    inner = _list_item(feature)
    if isinstance(inner, ClassLabel):
        return _Label(name, "classlabel_list", list(inner.names))
    if not (any_name or name.lower() in LABEL_NAMES):
        return None
    plain = (*_STRING_DTYPES, *_INT_DTYPES, "bool")
    if isinstance(feature, Value) and feature.dtype in plain:
        return _Label(name, "value")
    if isinstance(inner, Value) and inner.dtype in plain:
        return _Label(name, "value_list")
    return None


def _list_item(feature):
    """The item feature of a Sequence/List/LargeList, else None."""
    from datasets import LargeList, List, Sequence

    if isinstance(feature, (List, LargeList, Sequence)):
        return feature.feature
    return None


def _is_string(feature) -> bool:
    from datasets import Value

    return isinstance(feature, Value) and feature.dtype in _STRING_DTYPES


def _describe(features) -> str:
    return ", ".join(f"{c} ({f})" for c, f in features.items()) or "none"


def _list_values(dsd, splits: list[str], column: str) -> list[str]:
    """Class names of a list-of-values label: every value seen, sorted."""
    values = set()
    for split in splits:
        if column in dsd[split].column_names:
            for row in dsd[split][column]:
                values.update(v for v in row or () if v is not None and v != "")
    if not values:
        raise DataError(f"the label feature '{column}' holds no values in splits {', '.join(splits)}")
    return [str(v) for v in sorted(values)]


# ---------------------------------------------------------------- frames


def _split_frame(ds, split: str, text_cols: list[str], label: _Label, id_col: str | None, spec: str):
    """-> (frame with __generated_id, __dataset_id and texts; label columns; boolean Series of unlabelled rows)."""
    import numpy as np
    import pandas as pd

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


def _base(frame, id_key: str, text_cols: list[str]):
    out = frame[[id_key, *text_cols]].rename(columns={id_key: ID})
    return out.reset_index(drop=True)


def _plain_values(values):
    """Integral floats (ints that met a missing value) back to ints; bools to 0/1."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(values):
        return values.astype("int64")
    if pd.api.types.is_float_dtype(values) and values.notna().all() and (values % 1 == 0).all():
        return values.astype("int64")
    return values


def _labels_are_real(labels, missing, label: _Label) -> bool:
    if bool(missing.any()):
        return False
    # a multilabel test split without labels comes as empty lists
    return not (label.multilabel and int(labels.to_numpy().sum()) == 0)


def _listed(message: str, pattern: str) -> list[str] | None:
    match = re.search(pattern, message)
    if not match:
        return None
    with contextlib.suppress(ValueError, SyntaxError):
        return [str(v) for v in ast.literal_eval(match.group(1))]
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
