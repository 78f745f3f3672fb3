"""Small builders shared by the tests: synthetic competitions and workspaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from comp.fetch import fetch_local
from comp.synthetic import SyntheticCompetition
from comp.workspace import Workspace, init_workspace

TFIDF_CONFIG = "model: tfidf\nword_ngrams: [1, 2]\nchar_ngrams: null\nmin_df: 1\nC: 2.0\nn_jobs: 1\n"


def multilabel_source(folder: Path, train_rows: int = 300, test_rows: int = 100, seed: int = 7) -> dict[str, Path]:
    return SyntheticCompetition(train_rows=train_rows, test_rows=test_rows, seed=seed).write(folder)


def multiclass_source(folder: Path, train_rows: int = 240, test_rows: int = 60, seed: int = 3) -> dict[str, Path]:
    """Three classes ('neg', 'neu', 'pos' as 0/1/2), each with its own cue words."""
    rng = np.random.default_rng(seed)
    cues = {0: ["bad", "awful", "hate"], 1: ["okay", "fine", "meh"], 2: ["good", "great", "love"]}
    filler = "the a day work phone bus rain game team movie".split()
    n = train_rows + test_rows
    y = rng.choice(3, size=n, p=[0.3, 0.5, 0.2])
    texts = [" ".join([*rng.choice(filler, 4), *rng.choice(cues[c], 2)]) for c in y]
    ids = [f"r{i}" for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ids[:train_rows], "text": texts[:train_rows], "label": y[:train_rows]}).to_csv(
        folder / "train.csv", index=False
    )
    pd.DataFrame({"id": ids[train_rows:], "text": texts[train_rows:]}).to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": ids[train_rows:], "label": 0}).to_csv(folder / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ids[train_rows:], "label": y[train_rows:]}).to_csv(folder / "test_labels.csv", index=False)
    return {"answers": folder / "test_labels.csv"}


def make_workspace(tmp_path: Path, kind: str = "multilabel", **kwargs) -> Workspace:
    source = tmp_path / "download"
    (multilabel_source if kind == "multilabel" else multiclass_source)(source, **kwargs)
    ws = init_workspace("test-comp", tmp_path / "ws", {"tfidf.yaml": TFIDF_CONFIG})
    fetch_local(ws, source)
    return ws
