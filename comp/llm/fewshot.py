"""Few-shot examples that keep the out-of-fold estimate honest.

For fold k the examples come only from rows outside fold k, so no row is ever scored with its
own label in the prompt. They are drawn to cover the classes (one row per class in a seeded
random class order, until ``k`` rows are chosen; a multilabel row covers every label it has),
plus one row with no label where multilabel rows can be empty (the model sees ``none``), then
filled at random; the final order is shuffled so the prompt does not list classes in order. The
draw is seeded by ``(seed, fold)``: the same inputs give the same examples.

Test-set policy: **one prompt with examples drawn from all of train** (``fold=None``), the same
``k`` and seed. Test probabilities then come from one prompt of the same kind as each fold's
(the same number of examples, from a larger pool), so the thresholds tuned on the OOF carry over;
averaging the K folds' prompts would cost K passes over test (the expensive part of zero-shot
work) and shrink the test probabilities towards each other, away from the OOF's scale.
"""

from __future__ import annotations

import numpy as np

from comp.errors import ConfigError


def select_examples(
    Y: np.ndarray,
    k: int,
    *,
    folds: np.ndarray | None = None,
    fold: int | None = None,
    seed: int = 0,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Row indices of ``k`` few-shot examples (in prompt order) for ``fold``.

    ``Y``: (n_rows, n_classes) 0/1 labels (one-hot for multiclass, one column for binary); ``folds``: (n_rows,) fold of
    each row, required with ``fold``; ``fold=None`` draws from every row (the test prompt);
    ``eligible``: (n_rows,) bool, rows allowed as examples (e.g. texts short enough).
    """
    Y = np.asarray(Y) > 0
    if Y.ndim != 2:
        raise ValueError(f"Y must be (n_rows, n_classes), got shape {Y.shape}")
    if Y.shape[1] == 1:  # binary as one column (P(positive)): cover both answers
        Y = np.concatenate([~Y, Y], axis=1)
    if k < 0:
        raise ConfigError(f"few-shot examples must be 0 or more, got {k}")
    pool = np.ones(len(Y), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool).copy()
    if fold is not None:
        if folds is None:
            raise ValueError("fold given without folds")
        pool &= np.asarray(folds) != fold
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    if not pool.any():
        raise ConfigError(f"no rows are left to draw few-shot examples from for fold {fold}")
    rng = np.random.default_rng([seed, 0 if fold is None else int(fold) + 1])
    chosen: list[int] = []
    covered = np.zeros(Y.shape[1], dtype=bool)

    def take(mask: np.ndarray) -> None:
        options = np.flatnonzero(mask & pool)
        if len(options):
            row = int(rng.choice(options))
            chosen.append(row)
            pool[row] = False
            covered[:] |= Y[row]

    for c in rng.permutation(Y.shape[1]):
        if len(chosen) == k:
            break
        if not covered[c]:
            take(Y[:, c])
    empty = ~Y.any(axis=1)
    if len(chosen) < k and empty.any():
        take(empty)
    while len(chosen) < k and pool.any():
        take(np.ones(len(Y), dtype=bool))
    return np.array(chosen, dtype=np.int64)[rng.permutation(len(chosen))]
