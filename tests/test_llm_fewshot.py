"""Few-shot examples: never from the fold being scored, covering the classes, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from comp.errors import ConfigError
from comp.llm.fewshot import select_examples


def _multilabel(n=200, k=6, seed=0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, k)) < np.array([0.4, 0.3, 0.2, 0.1, 0.05, 0.03])).astype(np.uint8)
    folds = rng.integers(0, 5, n)
    return Y, folds


def test_examples_for_fold_k_never_come_from_fold_k():
    Y, folds = _multilabel()
    for fold in range(5):
        for seed in range(5):
            rows = select_examples(Y, 8, folds=folds, fold=fold, seed=seed)
            assert len(rows) == 8 and len(set(rows)) == 8
            assert not (folds[rows] == fold).any()


def test_examples_cover_every_class_and_an_empty_row():
    Y, folds = _multilabel()
    for fold in range(5):
        rows = select_examples(Y, 8, folds=folds, fold=fold, seed=1)
        outside = Y[folds != fold]
        assert (Y[rows].sum(0) > 0)[outside.sum(0) > 0].all()  # every class the pool has
        assert (Y[rows].sum(1) == 0).any()  # the model sees a "none" row


def test_multiclass_and_binary_cover_their_classes():
    rng = np.random.default_rng(0)
    codes = rng.choice(4, 300, p=[0.7, 0.2, 0.07, 0.03])
    Y = np.eye(4, dtype=np.uint8)[codes]
    folds = np.arange(300) % 5
    rows = select_examples(Y, 4, folds=folds, fold=2, seed=3)
    assert sorted(codes[rows]) == [0, 1, 2, 3]
    binary = (codes == 3).astype(np.uint8)[:, None]  # one column: P(positive)
    rows = select_examples(binary, 2, folds=folds, fold=0, seed=0)
    assert sorted(binary[rows, 0]) == [0, 1]


def test_seeded_and_deterministic():
    Y, folds = _multilabel()
    a = select_examples(Y, 8, folds=folds, fold=1, seed=7)
    assert (a == select_examples(Y, 8, folds=folds, fold=1, seed=7)).all()
    assert not (a == select_examples(Y, 8, folds=folds, fold=1, seed=8)).all()
    assert set(a) != set(select_examples(Y, 8, folds=folds, fold=2, seed=7))


def test_test_prompt_draws_from_all_of_train_and_eligibility_is_kept():
    Y, folds = _multilabel()
    eligible = np.arange(len(Y)) % 2 == 0
    rows = select_examples(Y, 10, seed=0, eligible=eligible)
    assert len(rows) == 10 and eligible[rows].all()
    assert len(select_examples(Y[:3], 10, seed=0)) == 3  # a small pool gives what it has
    assert len(select_examples(Y, 0, folds=folds, fold=0)) == 0


def test_bad_requests():
    Y, folds = _multilabel(n=10)
    with pytest.raises(ConfigError, match="no rows are left"):
        select_examples(Y, 2, folds=np.zeros(10, dtype=int), fold=0)
    with pytest.raises(ConfigError, match="0 or more"):
        select_examples(Y, -1)
    with pytest.raises(ValueError, match="fold given without folds"):
        select_examples(Y, 2, fold=0)
