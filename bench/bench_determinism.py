"""Bit-reproducible parallel class fits: comp's process-parallel LinearHead against thread-parallel liblinear.

The shipped tfidf config (word 1-2 + char_wb 2-5 n-grams, C=4, balanced) on GoEmotions train rows (28
classes): the features are built once, then the 28 per-class logistic regressions are fitted
- sequentially (n_jobs=1),
- in threads, as comp did before (liblinear's dual solver shares one random generator between
  threads, so two identical fits differ),
- in processes (loky), as comp does now,
twice each, side by side in one run. Reported: wall seconds of the fit, and the largest difference
between the two fits' test probabilities. Writes the `determinism` section of docs/benchmarks.md.

    .venv/bin/python bench/bench_determinism.py [--rows 20000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from common import dataset, machine, write_section

from comp.models.common import LinearHead, _fit_logistic, ngram_features

COMMAND = ".venv/bin/python bench/bench_determinism.py"


def fit_threads(head: LinearHead, X, Y) -> list:
    """The previous implementation: the classes' liblinear fits in a thread pool."""
    from joblib import Parallel, delayed

    params = head._binary_params(X.shape[1] > X.shape[0])
    fitted = Parallel(n_jobs=head.n_jobs, backend="threading")(
        delayed(_fit_logistic)(X, Y[:, j], params) for j in range(Y.shape[1])
    )
    head.models_ = [m for m, _ in fitted]
    head.n_outputs_ = Y.shape[1]
    return head


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    folder = dataset("goemotions")
    if folder is None:
        print("no shared GoEmotions data: skipped")
        return 0
    frame = pd.read_csv(folder / "train.csv", dtype=str, keep_default_na=False)
    classes = [c for c in frame.columns if c not in ("id", "text")]
    train, test = frame.iloc[: args.rows], frame.iloc[args.rows : args.rows + 2000]
    Y = train[classes].to_numpy(dtype=np.uint8)
    vectorizer = ngram_features(
        [1, 2], [2, 5], min_df=2, max_features=200_000, sublinear_tf=True, strip_accents="unicode", dtype=np.float32
    )
    X = vectorizer.fit_transform(train["text"].tolist()).tocsr()
    X.sum_duplicates()
    Xt = vectorizer.transform(test["text"].tolist())
    print(f"{X.shape[0]} rows x {X.shape[1]} features, {len(classes)} classes, {args.jobs} jobs", flush=True)

    variants = (
        ("sequential", 1, None),
        ("threads (before)", args.jobs, fit_threads),
        ("processes (now)", args.jobs, None),
    )
    outputs = {name: [] for name, _, _ in variants}
    seconds = {name: [] for name, _, _ in variants}
    for _ in range(2):  # interleaved, so that a change in the machine's load hits every variant alike
        for name, jobs, fit in variants:
            head = LinearHead("multilabel", C=4.0, n_jobs=jobs, random_state=0)
            start = time.perf_counter()
            (fit(head, X, Y) if fit else head.fit(X, Y))
            seconds[name].append(time.perf_counter() - start)
            outputs[name].append(head.predict_proba(Xt))
            print(f"{name:18s} {seconds[name][-1]:7.2f} s", flush=True)
    rows = []
    for name, jobs, _ in variants:
        diff = float(np.abs(outputs[name][0] - outputs[name][1]).max())
        rows.append((name, jobs, min(seconds[name]), diff, outputs[name][0]))
        print(f"{name:18s} best {min(seconds[name]):7.2f} s  max |run 1 - run 2| = {diff:.1e}", flush=True)
    same = float(np.abs(rows[0][4] - rows[2][4]).max())
    base = rows[0][2]
    table = "\n".join(f"| {n} | {j} | {s:.1f} | {base / s:.2f}x | {d:.1e} |" for n, j, s, d, _ in rows)
    text = f"""## Determinism: parallel class fits, threads vs processes

The 28 per-class liblinear fits of the tfidf family on {X.shape[0]:,} GoEmotions rows
({X.shape[1]:,} word + char n-gram features), each fitted twice (the variants interleaved); the best
of two wall times.
liblinear's dual solver draws from one process-wide random generator, so fits in parallel threads
disturb each other and two identical runs differ; fits in processes do not.

| fit | jobs | seconds | speed vs sequential | max difference between two identical runs |
|---|---|---|---|---|
{table}

Processes against sequential: max difference {same:.1e} (the same bytes).
Machine: {machine()}, shared with other work while measured (load above 2 per core), so no variant
could gain from a second core here; what this run shows is processes against threads, side by side.
The ratios and differences come from one run. Reproduce: `{COMMAND} --rows {args.rows} --jobs {args.jobs}`.
"""
    print(text)
    if not args.no_write:
        write_section("determinism", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
