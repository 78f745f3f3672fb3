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

from comp.hf_dataset.export import (
    SAMPLE_SUBMISSION_CSV,
    TEST_CSV,
    TEST_LABELS_CSV,
    TRAIN_CSV,
    ExportSummary,
    export_hf_dataset,
    parse_spec,
)
from comp.hf_dataset.schema import ID, LABEL_NAMES

__all__ = [
    "ID",
    "LABEL_NAMES",
    "SAMPLE_SUBMISSION_CSV",
    "TEST_CSV",
    "TEST_LABELS_CSV",
    "TRAIN_CSV",
    "ExportSummary",
    "export_hf_dataset",
    "parse_spec",
]
