"""comp's numpy log loss against sklearn's, side by side: seconds per call and the largest difference.

The weighted blend (`comp ensemble --method weighted --metric log_loss`) scores the metric once per
candidate member per step, so the per-call cost multiplies. Writes the `metrics` section of
docs/benchmarks.md.

    .venv/bin/python bench/bench_metrics.py [--rows 10000] [--classes 28] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from common import machine, write_section


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)  # the least-disturbed call: other jobs only ever add time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from sklearn.metrics import log_loss as sk_log_loss

    from comp.metrics import log_loss

    rng = np.random.default_rng(0)
    P = rng.random((args.rows, args.classes))
    Y = rng.random((args.rows, args.classes)) < 0.1
    Pm = P / P.sum(1, keepdims=True)
    Ym = np.eye(args.classes, dtype=bool)[rng.integers(0, args.classes, args.rows)]
    lines = [
        "## Log loss: comp's numpy expression vs sklearn's `log_loss`",
        "",
        f"{args.rows:,} rows x {args.classes} classes, best of {args.repeats} calls ({machine()}).",
        "",
        "| task | comp (s) | sklearn (s) | sklearn / comp | max abs difference |",
        "|---|---:|---:|---:|---:|",
    ]
    for task, y, p, sk in (
        (
            "multilabel",
            Y,
            P,
            lambda: sk_log_loss(Y.ravel(), np.column_stack([1 - P.ravel(), P.ravel()]), labels=[False, True]),
        ),
        ("multiclass", Ym, Pm, lambda: sk_log_loss(Ym.argmax(1), Pm, labels=np.arange(args.classes))),
    ):
        ours = best_of(lambda y=y, p=p, task=task: log_loss(y, p, task), args.repeats)
        theirs = best_of(sk, args.repeats)
        diff = abs(log_loss(y, p, task) - sk())
        lines.append(f"| {task} | {ours:.4f} | {theirs:.4f} | {theirs / ours:.1f}x | {diff:.1e} |")
    lines += [
        "",
        "comp keeps its own three-line expression for this reason (comment in comp/metrics.py);",
        "tests/test_metrics.py checks it against sklearn.",
        "",
        "Reproduce: `.venv/bin/python bench/bench_metrics.py`",
    ]
    write_section("metrics", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
