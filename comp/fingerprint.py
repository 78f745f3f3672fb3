"""What a run was trained and predicted on, as digests recorded in its run.yaml under ``data:``.

```yaml
data:
  recorded: 2026-03-01T12:00:00          # when the run first saw this data
  columns: {id: ID, text: [Tweet], separator: "\\n", labels: [anger, ...], task: multilabel, classes: [...]}
  train: {rows: 6838, ids: <sha256>, texts: <sha256>, labels: <sha256>}
  test:  {rows: 3259, ids: <sha256>, texts: <sha256>}
```

Digests are over rows sorted by id, so re-ordering rows changes nothing while a changed label, a
shuffled text (same ids) or a new id does. Texts are the model's inputs (text columns joined with the
separator), so changing ``text_columns`` or ``text_separator`` in comp.yaml counts as a change too.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from comp.data import Competition

# the parts compared, in the order a message names them
PARTS = (("train", "ids"), ("train", "texts"), ("train", "labels"), ("test", "ids"), ("test", "texts"))
_COLUMN_NAMES = {
    "id": "id_column",
    "text": "text_columns",
    "separator": "text_separator",
    "labels": "label_columns",
    "task": "task",
    "classes": "classes",
}


def _digest_strings(values) -> str:
    h = hashlib.sha256()
    for value in values:
        data = str(value).encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))  # length-prefixed: no separator can collide
        h.update(data)
    return h.hexdigest()


def _split(ids: list[str], texts: list[str], Y: np.ndarray | None = None) -> dict[str, Any]:
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable") if ids else np.zeros(0, dtype=int)
    part = {
        "rows": len(ids),
        "ids": _digest_strings(ids[i] for i in order),
        "texts": _digest_strings(texts[i] for i in order),
    }
    if Y is not None:
        rows = np.ascontiguousarray(np.asarray(Y, dtype=np.uint8)[order])
        part["labels"] = hashlib.sha256(str(rows.shape).encode() + rows.tobytes()).hexdigest()
    return part


def data_fingerprint(comp: Competition, recorded: str) -> dict[str, Any]:
    """The ``data:`` record of a run trained on ``comp``'s train and test files."""
    s = comp.settings
    return {
        "recorded": recorded,
        "columns": {
            "id": s.id_column,
            "text": list(s.text_columns),
            "separator": s.text_separator,
            "labels": list(s.label_columns),
            "task": s.task,
            "classes": [str(c) for c in s.classes],
        },
        "train": _split(comp.train_ids, comp.train_texts, comp.Y),
        "test": _split(comp.test_ids, comp.test_texts),
    }


def data_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two ``data:`` records, as phrases: "train.csv labels", "test.csv texts", ..."""
    changes = []
    old_columns, new_columns = old.get("columns") or {}, new.get("columns") or {}
    for key, name in _COLUMN_NAMES.items():
        if old_columns.get(key) != new_columns.get(key):
            changes.append(f"comp.yaml's {name}")
    for split, part in PARTS:
        if (old.get(split) or {}).get(part) != (new.get(split) or {}).get(part):
            changes.append(f"{split}.csv {part}")
    return changes


def same_data(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return not data_changes(old, new)
