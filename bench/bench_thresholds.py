"""Threshold search speed: comp's exact per-class search against the usual notebook grid.

1,000,000 rows x 28 classes of synthetic probabilities (per-class prevalence from 0.5% to 30%,
informative but noisy). The notebook way: for each class, 91 thresholds 0.05..0.95, each scored with
``sklearn.metrics.f1_score``. comp's way: ``comp.thresholds.exact_thresholds``, the exact optimum
over every distinct cut. Writes the `thresholds` section of docs/benchmarks.md.

    .venv/bin/python bench/bench_thresholds.py [--rows 1000000] [--classes 28] [--grid-classes 3]

The sklearn grid takes minutes on all classes, so by default it is timed on --grid-classes classes
(spread over the prevalence range) and extrapolated linearly; --grid-classes 0 times every class.
Its per-class F1 on every class comes from the same counts in numpy, checked equal to sklearn's on
the timed classes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from common import machine, write_section
from sklearn.metrics import f1_score

from comp.thresholds import exact_thresholds

COMMAND = ".venv/bin/python bench/bench_thresholds.py"
GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)  # 91 thresholds, as notebooks write it
TARGET_SECONDS, TARGET_RATIO = 2.0, 50.0


def synthetic(rows: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skewed labels and sigmoid probabilities: the true class shifts the logit by 2, noise sd 1.2."""
    rng = np.random.default_rng(seed)
    prevalence = np.geomspace(0.005, 0.30, classes)
    Y = rng.random((rows, classes)) < prevalence
    logits = rng.normal(0.0, 1.2, (rows, classes))
    logits += np.where(Y, 1.0, -1.0)
    logits += np.log(prevalence / (1 - prevalence))
    P = 1.0 / (1.0 + np.exp(-logits))
    return P, Y, prevalence


def f1_at(p: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F1 of ``p >= t`` for each t, from sorted counts (equal to sklearn's f1_score)."""
    order = np.sort(p)
    kept = p.size - np.searchsorted(order, thresholds, side="left")
    tp = y.sum() - np.searchsorted(np.sort(p[y]), thresholds, side="left")
    return np.where(kept + y.sum() > 0, 2 * tp / np.maximum(kept + y.sum(), 1), 0.0)


def time_exact(P, Y, repeats: int) -> tuple[float, list[float], np.ndarray, np.ndarray]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        thresholds, best = exact_thresholds(P, Y)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, thresholds, best


def time_sklearn_grid(P, Y, classes: list[int]) -> tuple[float, dict[int, np.ndarray]]:
    scores = {}
    start = time.perf_counter()
    for c in classes:
        y, p = Y[:, c], P[:, c]
        scores[c] = np.array([f1_score(y, p >= t, zero_division=0) for t in GRID])
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=28)
    parser.add_argument("--grid-classes", type=int, default=3, help="classes to time the sklearn grid on; 0 = all")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the exact search (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()

    load = os.getloadavg()[0]  # other jobs on the machine slow both methods down
    P, Y, prevalence = synthetic(args.rows, args.classes, args.seed)
    print(f"data: {args.rows:,} x {args.classes}, prevalence {prevalence[0]:.1%} .. {prevalence[-1]:.1%}")

    exact_s, exact_runs, thresholds, exact_f1 = time_exact(P, Y, args.repeats)
    print(f"exact search: {exact_s:.3f} s (median of {', '.join(f'{t:.3f}' for t in exact_runs)})")

    n_grid = args.classes if args.grid_classes <= 0 else min(args.grid_classes, args.classes)
    timed = sorted({int(round(i)) for i in np.linspace(0, args.classes - 1, n_grid)})
    grid_timed_s, sk_scores = time_sklearn_grid(P, Y, timed)
    grid_s = grid_timed_s * args.classes / len(timed)
    extrapolated = len(timed) < args.classes
    how = (
        f"timed on {len(timed)} of {args.classes} classes ({grid_timed_s:.1f} s), extrapolated linearly"
        if extrapolated
        else "timed on every class"
    )
    print(f"sklearn grid: {grid_s:.1f} s ({how})")

    # per-class F1 of both: grid from numpy counts (checked against sklearn), exact at its thresholds
    grid_f1 = np.empty(args.classes)
    grid_t = np.empty(args.classes)
    exact_check = np.empty(args.classes)
    at_half = np.empty(args.classes)
    for c in range(args.classes):
        y, p = Y[:, c], P[:, c]
        scores = f1_at(p, y, GRID)
        if c in sk_scores:
            np.testing.assert_allclose(scores, sk_scores[c], rtol=0, atol=1e-12)
        best = int(np.argmax(scores))
        grid_f1[c], grid_t[c] = scores[best], GRID[best]
        exact_check[c] = f1_at(p, y, thresholds[c : c + 1])[0]
        at_half[c] = f1_at(p, y, np.array([0.5]))[0]
    np.testing.assert_allclose(exact_check, exact_f1, rtol=0, atol=1e-12)
    for c in timed:  # and sklearn agrees with the exact search's own score
        assert abs(f1_score(Y[:, c], P[:, c] >= thresholds[c]) - exact_f1[c]) < 1e-12
    diff = exact_f1 - grid_f1
    assert (diff >= -1e-12).all(), f"exact search lower than the grid on classes {np.flatnonzero(diff < -1e-12)}"

    ratio = grid_s / exact_s
    meets = exact_s <= TARGET_SECONDS and ratio >= TARGET_RATIO
    print(
        f"speed-up: {ratio:.0f}x; exact F1 - grid F1: min {diff.min():+.5f}, mean {diff.mean():+.5f}, max "
        f"{diff.max():+.5f}"
    )
    print(f"macro F1: exact {exact_f1.mean():.4f}, grid {grid_f1.mean():.4f}, at 0.5 {at_half.mean():.4f}")
    print(f"targets (<= {TARGET_SECONDS:g} s, >= {TARGET_RATIO:g}x): {'met' if meets else 'NOT met'}")

    rows = "\n".join(
        f"| {c} | {prevalence[c]:.2%} | {at_half[c]:.4f} | {grid_t[c]:.2f} | {grid_f1[c]:.4f} | "
        f"{thresholds[c]:.4f} | {exact_f1[c]:.4f} | {diff[c]:+.5f} |"
        for c in range(args.classes)
    )
    text = f"""
## Threshold search: exact per-class search vs an sklearn grid

{args.rows:,} rows x {args.classes} classes of synthetic probabilities (prevalence {prevalence[0]:.1%} to
{prevalence[-1]:.1%}, logit shifted by 2 for the true class, noise sd 1.2, seed {args.seed}).
Notebook way: per class, 91 thresholds 0.05..0.95 each scored with `sklearn.metrics.f1_score`.
comp: `comp.thresholds.exact_thresholds`, every distinct cut point, one sort per class.

| method | time | speed-up |
|---|---:|---:|
| sklearn grid, 91 thresholds x {args.classes} classes | {grid_s:.1f} s{" (extrapolated)" * extrapolated} | 1x |
| comp exact search | {exact_s:.3f} s | {ratio:.0f}x |

- sklearn grid {how}.
- exact search: median of {args.repeats} runs ({", ".join(f"{t:.3f}" for t in exact_runs)} s), input checks included.
- targets: at most {TARGET_SECONDS:g} s and at least {TARGET_RATIO:g}x faster: **{"met" if meets else "not met"}**.
- per-class F1, exact minus grid: min {diff.min():+.5f}, mean {diff.mean():+.5f}, max {diff.max():+.5f}
  (never lower, asserted). Macro F1: exact {exact_f1.mean():.4f}, grid {grid_f1.mean():.4f},
  at 0.5 {at_half.mean():.4f}.
- machine: {machine()}; 1-minute load average {load:.1f} when the run started.
- reproduce: `{COMMAND}`

<details><summary>Per-class F1</summary>

| class | prevalence | F1 at 0.5 | grid threshold | grid F1 | exact threshold | exact F1 | exact - grid |
|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

</details>
"""
    if args.no_write:
        print(text)
    else:
        write_section("thresholds", text)
        print("wrote the thresholds section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
