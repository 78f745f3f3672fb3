"""What `comp info` shows: schema, counts, class prevalence, text lengths, and warnings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from comp.data import Competition
from comp.folds import class_warnings


@dataclass
class ClassCount:
    name: str
    count: int
    prevalence: float


@dataclass
class LengthStats:
    mean: float
    median: float
    p95: float
    max: int


@dataclass
class DataInfo:
    train_rows: int
    test_rows: int
    classes: list[ClassCount]
    chars: dict[str, LengthStats]  # "train" / "test"
    words: dict[str, LengthStats]
    warnings: list[str] = field(default_factory=list)


def _lengths(values: list[int]) -> LengthStats:
    a = np.asarray(values)
    return LengthStats(float(a.mean()), float(np.median(a)), float(np.percentile(a, 95)), int(a.max()))


def describe(comp: Competition, n_folds: int) -> DataInfo:
    settings = comp.settings
    Y = comp.Y
    if settings.task == "binary":
        counts = [len(Y) - int(Y.sum()), int(Y.sum())]
        names = [str(c) for c in settings.classes]
    else:
        counts = Y.sum(axis=0).astype(int).tolist()
        names = comp.classes
    classes = [ClassCount(n, c, c / len(Y)) for n, c in zip(names, counts, strict=True)]
    chars = {
        s: _lengths([len(t) for t in texts]) for s, texts in (("train", comp.train_texts), ("test", comp.test_texts))
    }
    words = {
        s: _lengths([len(t.split()) for t in texts])
        for s, texts in (("train", comp.train_texts), ("test", comp.test_texts))
    }
    return DataInfo(len(Y), len(comp.test_texts), classes, chars, words, data_warnings(comp, n_folds))


def data_warnings(comp: Competition, n_folds: int) -> list[str]:
    out = []
    train_texts = [t.strip() for t in comp.train_texts]
    seen: dict[str, int] = {}
    for t in train_texts:
        seen[t] = seen.get(t, 0) + 1
    duplicated = {t: c for t, c in seen.items() if c > 1}
    if duplicated:
        rows = sum(duplicated.values())
        conflicting = _conflicting_duplicates(train_texts, comp.Y, duplicated)
        out.append(
            f"{rows} train rows share their text with another row ({len(duplicated)} texts, {conflicting} with "
            "conflicting labels); identical texts in different folds inflate CV slightly"
        )
    shared = set(train_texts) & {t.strip() for t in comp.test_texts}
    if shared:
        example = next(iter(sorted(shared, key=len)))
        out.append(f"{len(shared)} test texts also appear in train (e.g. {example[:40]!r}); a lookup could label them")
    if comp.settings.task == "multilabel":
        empty = int((comp.Y.sum(axis=1) == 0).sum())
        if empty:
            out.append(
                f"{empty} train rows have no label at all ({empty / len(comp.Y):.1%}); if the competition never has "
                "empty rows, set min_labels: 1 in comp.yaml"
            )
    out.extend(class_warnings(comp.Y, comp.classes, n_folds, comp.settings.task))
    return out


def _conflicting_duplicates(texts: list[str], Y: np.ndarray, duplicated: dict[str, int]) -> int:
    labels: dict[str, set[bytes]] = {}
    for t, row in zip(texts, Y, strict=True):
        if t in duplicated:
            labels.setdefault(t, set()).add(row.tobytes())
    return sum(1 for v in labels.values() if len(v) > 1)
