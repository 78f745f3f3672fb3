"""`comp info` and `comp folds` on the real GoEmotions files (../shared/data), when they are present."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comp.data import load_competition
from comp.fetch import fetch_local
from comp.folds import make_folds
from comp.info import describe
from comp.workspace import init_workspace

GOEMOTIONS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "goemotions"
pytestmark = pytest.mark.skipif(
    not (GOEMOTIONS / "train.csv").is_file(), reason="../shared/data/goemotions not present"
)


def test_goemotions_counts_and_folds(tmp_path):
    ws = init_workspace("goemotions", tmp_path / "ws", {})
    fetch_local(ws, GOEMOTIONS)
    settings = ws.load_settings()
    assert settings.task == "multilabel" and len(settings.classes) == 28 and settings.text_columns == ["text"]
    comp = load_competition(ws, settings)
    raw = pd.read_csv(GOEMOTIONS / "train.csv")
    info = describe(comp, 5)
    assert info.train_rows == len(raw) == 43410 and info.test_rows == 5427
    assert {c.name: c.count for c in info.classes} == raw[settings.label_columns].sum().to_dict()
    assert any("share their text" in w for w in info.warnings)  # 183 duplicated train texts (PROVENANCE.md)
    folds = make_folds(comp, 5, 42)["fold"].to_numpy()
    for k in range(5):
        in_fold = comp.Y[folds == k].sum(axis=0)
        assert (in_fold > 0).all(), "every class in every fold"
        assert np.abs(comp.Y[folds == k].mean(axis=0) - comp.Y.mean(axis=0)).max() < 0.005
