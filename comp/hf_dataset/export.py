"""`export_hf_dataset`: a Hugging Face dataset written as a Kaggle-style download (see comp.hf_dataset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from comp.atomic import write_csv
from comp.errors import DataError
from comp.hf_dataset.loading import load_dataset_dict
from comp.hf_dataset.schema import (
    ID,
    base_frame,
    choose_splits,
    describe,
    find_label,
    is_string,
    labels_are_real,
    list_values,
    plain_values,
    split_frame,
)

TRAIN_CSV = "train.csv"
TEST_CSV = "test.csv"
SAMPLE_SUBMISSION_CSV = "sample_submission.csv"
TEST_LABELS_CSV = "test_labels.csv"


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
        out.append("answer key: " + (TEST_LABELS_CSV if self.has_answer_key else "none (the test labels are not real)"))
        return out + self.notes


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

    name, config = parse_spec(spec)
    dsd, source = load_dataset_dict(name, config, spec)
    train_names, test_name = choose_splits(dsd, train_splits, test_split, spec)
    features = dsd[train_names[0]].features
    label = find_label(features, label_column, spec)
    id_col = next((c for c in features if c == ID), None) or next((c for c in features if c.lower() == ID), None)
    if id_col == label.name:
        id_col = None
    text_cols = [c for c, f in features.items() if is_string(f) and c not in (id_col, label.name)]
    if not text_cols:
        raise DataError(
            f"Hugging Face dataset {spec} has no string feature to use as text "
            f"(features: {describe(features)}); a text competition needs at least one Value('string') column"
        )
    for split in [*train_names, test_name]:
        missing = [c for c in text_cols if c not in dsd[split].column_names]
        if missing:
            raise DataError(f"split '{split}' of {spec} lacks the text feature(s) {', '.join(missing)}")
    if label.kind == "value_list":
        label.names = list_values(dsd, [*train_names, test_name], label.name)
    label_cols = label.names if label.multilabel else [label.name]
    clash = sorted(set(label_cols) & {ID, *text_cols})
    if clash:
        raise DataError(
            f"Hugging Face dataset {spec}: label column(s) {', '.join(map(str, clash))} would clash with the id/text "
            "columns of the CSVs; rename the feature or the classes first"
        )

    notes: list[str] = []
    train_parts = [split_frame(dsd[s], s, text_cols, label, id_col, spec) for s in train_names]
    test_part = split_frame(dsd[test_name], test_name, text_cols, label, id_col, spec)

    ids_ok = id_col is not None and all(id_col in dsd[s].column_names for s in [*train_names, test_name])
    if ids_ok:
        all_ids = pd.concat([p[0]["__dataset_id"] for p in [*train_parts, test_part]], ignore_index=True)
        ids_ok = bool(all_ids.notna().all() and all_ids.is_unique)
        if not ids_ok:
            notes.append(f"the '{id_col}' feature is not unique across the exported splits; ids were generated")
    id_key = "__dataset_id" if ids_ok else "__generated_id"

    train_frames, dropped_rows = [], 0
    for frame, labels, missing in train_parts:
        dropped_rows += int(missing.sum())
        train_frames.append(pd.concat([base_frame(frame, id_key, text_cols), labels], axis=1)[~missing.to_numpy()])
    train = pd.concat(train_frames, ignore_index=True)
    if dropped_rows:
        notes.append(f"{dropped_rows} train row(s) without a label were left out")
    if train.empty:
        raise DataError(f"the train split(s) {', '.join(train_names)} of {spec} have no labelled rows")
    if not label.multilabel:
        train[label.name] = plain_values(train[label.name])

    test_frame, test_labels, test_missing = test_part
    test = base_frame(test_frame, id_key, text_cols)
    sample = pd.DataFrame({ID: test[ID]})
    for col in label_cols:
        sample[col] = 0
    has_key = labels_are_real(test_labels, test_missing, label)
    if has_key:
        answers = pd.concat([test[[ID]], test_labels], axis=1)
        if not label.multilabel:
            answers[label.name] = plain_values(answers[label.name])
    else:
        n_missing = int(test_missing.sum())
        why = "has no labels" if n_missing in (0, len(test)) else f"lacks labels for {n_missing} of {len(test)} rows"
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
