"""A built-in synthetic competition: multilabel emotion tagging of short tweets.

Made with a fixed seed, with the traits that trip up notebooks: imbalanced classes (from ~30% down
to ~2%), labels that co-occur (joy with optimism, anger with disgust), rows with no label, cue words
that are noisy (they sometimes appear without their emotion) and a hidden answer key for the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from comp.atomic import write_csv

CLASSES = ["joy", "optimism", "anger", "disgust", "sadness", "fear"]
_BASE_RATE = {"joy": 0.30, "anger": 0.16, "sadness": 0.12, "fear": 0.035}
# P(child | parent): co-occurring emotions
_CO_OCCUR = {("optimism", "joy"): 0.45, ("disgust", "anger"): 0.40, ("optimism", None): 0.03, ("disgust", None): 0.015}

_CUES = {
    "joy": ["happy", "love", "great", "awesome", "smile", "fun", "yay", "delighted", "lol", "best"],
    "optimism": ["hope", "tomorrow", "believe", "soon", "better", "forward", "goals", "faith", "progress"],
    "anger": ["angry", "hate", "furious", "stupid", "rage", "annoyed", "worst", "mad", "ridiculous"],
    "disgust": ["gross", "disgusting", "sick", "nasty", "vile", "ew", "revolting", "filthy"],
    "sadness": ["sad", "miss", "cry", "lonely", "lost", "tears", "heartbroken", "down", "sorry"],
    "fear": ["scared", "afraid", "nervous", "terrified", "panic", "worried", "anxious", "dread"],
}
_FILLER = (
    "the a my this that today just so really game work coffee bus train phone weekend monday friends team "
    "music movie city rain news school class meeting dinner lunch morning night week people update again"
).split()
_OPENERS = ["", "", "", "@user ", "omg ", "honestly ", "ugh ", "well ", "#mood "]


@dataclass
class SyntheticCompetition:
    train_rows: int = 2000
    test_rows: int = 800
    seed: int = 2024

    def labels(self, rng: np.random.Generator, n: int) -> np.ndarray:
        Y = np.zeros((n, len(CLASSES)), dtype=np.uint8)
        col = {c: i for i, c in enumerate(CLASSES)}
        for name, rate in _BASE_RATE.items():
            Y[:, col[name]] = rng.random(n) < rate
        for (child, parent), p in _CO_OCCUR.items():
            has_parent = Y[:, col[parent]] == 1 if parent else np.ones(n, dtype=bool)
            Y[:, col[child]] |= (has_parent & (rng.random(n) < p)).astype(np.uint8)
        return Y

    def text(self, rng: np.random.Generator, row: np.ndarray) -> str:
        words = list(rng.choice(_FILLER, size=rng.integers(4, 12)))
        for i in np.flatnonzero(row):
            cues = _CUES[CLASSES[i]]
            # an emotion is usually, not always, voiced by its cue words
            if rng.random() < 0.85:
                words += list(rng.choice(cues, size=rng.integers(1, 3)))
        if rng.random() < 0.25:  # a misleading cue from a random class
            words.append(rng.choice(_CUES[CLASSES[rng.integers(len(CLASSES))]]))
        rng.shuffle(words)
        return _OPENERS[rng.integers(len(_OPENERS))] + " ".join(words)

    def write(self, folder: Path) -> dict[str, Path]:
        """Write train.csv, test.csv, sample_submission.csv and the answer key test_labels.csv."""

        rng = np.random.default_rng(self.seed)
        n = self.train_rows + self.test_rows
        Y = self.labels(rng, n)
        texts = [self.text(rng, row) for row in Y]
        ids = [f"{i:05d}" for i in rng.permutation(n)]
        labels = pd.DataFrame(Y, columns=CLASSES)
        frame = pd.concat([pd.DataFrame({"ID": ids, "Tweet": texts}), labels], axis=1)
        train, test = frame.iloc[: self.train_rows], frame.iloc[self.train_rows :]
        folder = Path(folder)
        paths = {
            "train": folder / "train.csv",
            "test": folder / "test.csv",
            "sample_submission": folder / "sample_submission.csv",
            "answers": folder / "test_labels.csv",
        }
        write_csv(paths["train"], train)
        write_csv(paths["test"], test[["ID", "Tweet"]])
        sample = test[["ID"]].copy()
        for c in CLASSES:
            sample[c] = 0
        write_csv(paths["sample_submission"], sample)
        write_csv(paths["answers"], test[["ID", *CLASSES]])
        return paths
