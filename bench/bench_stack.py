"""Second-stage methods side by side: mean, weighted (Caruana) and stack (logistic and LightGBM
meta-models) over the same members (tfidf, nbsvm, minilm-embeddings; 5 folds), each with CV at 0.5,
tuned and honest, and test scored against the hidden answer keys the way a user gets it (the file
`comp submit --dry-run` writes, scored by `comp evaluate`). Also: whether the honest CV ranked the
methods in the same order as test. Writes the `stack` section of docs/benchmarks.md.

    .venv/bin/python bench/bench_stack.py [--datasets goemotions tweeteval_emotion] [--skip-embeddings]
        [--skip-lightgbm]
"""

from __future__ import annotations

import argparse
import time

from bench_quality import answer_matrix, test_scores, workspace
from common import dataset, machine, write_section

from comp.ensemble import make_ensemble
from comp.train import train

COMMAND = ".venv/bin/python bench/bench_stack.py"


def methods(lightgbm: bool) -> list[tuple[str, dict]]:
    rows = [
        ("mean", {"method": "mean"}),
        ("weighted", {"method": "weighted"}),
        ("stack, logistic C=1", {"method": "stack", "meta_c": 1.0}),
        ("stack, logistic C=0.1", {"method": "stack", "meta_c": 0.1}),
    ]
    if lightgbm:
        rows.append(("stack, lightgbm", {"method": "stack", "meta_model": "lightgbm"}))
    return rows


def same_order(a: list[float], b: list[float]) -> str:
    """'yes' when sorting by ``a`` and by ``b`` (best first) gives the same order, else the pairs
    that swap."""
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a)) if (a[i] - a[j]) * (b[i] - b[j]) < 0]
    return "yes" if not pairs else f"no ({len(pairs)} of {len(a) * (len(a) - 1) // 2} pairs swap)"


def bench(name: str, embeddings: bool, lightgbm: bool) -> tuple[list[tuple], str]:
    ws = workspace(name)
    _, Y_test = answer_matrix(ws, name)
    members = ["tfidf", "nbsvm"] + (["minilm-embeddings"] if embeddings else [])
    rows = []
    for run in members:
        result = train(ws, ws.configs_dir / f"{run}.yaml", n_folds=5)
        s = result.scores
        rows.append(
            (
                name,
                f"member: {run}",
                s.at_05,
                s.tuned,
                s.honest,
                *test_scores(ws, name, run, Y_test),
                sum(result.fold_seconds.values()),
            )
        )
        print(rows[-1], flush=True)
    blended = []
    for label, kwargs in methods(lightgbm):
        started = time.perf_counter()
        run = "bench-" + label.replace(", ", "-").replace(" ", "").replace("=", "")
        result = make_ensemble(ws, members, run, force=True, **kwargs)
        seconds = time.perf_counter() - started
        s = result.scores
        weights = ", ".join(f"{k} {v:.2f}" for k, v in result.weights.items())
        rows.append(
            (name, f"{label} ({weights})", s.at_05, s.tuned, s.honest, *test_scores(ws, name, run, Y_test), seconds)
        )
        blended.append(rows[-1])
        print(rows[-1], flush=True)
    order = same_order([r[4] for r in blended], [r[6] for r in blended])
    return rows, order


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=["tweeteval_emotion", "goemotions"])
    parser.add_argument("--skip-embeddings", action="store_true")
    parser.add_argument("--skip-lightgbm", action="store_true")
    args = parser.parse_args()
    rows, orders = [], {}
    for name in args.datasets:
        if dataset(name) is None:
            print(f"skipping {name}: ../shared/data/{name} not found")
            continue
        found, orders[name] = bench(name, not args.skip_embeddings, not args.skip_lightgbm)
        rows += found
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [
        "## Second stage: mean, weighted and stacked ensembles (5 folds, macro-F1)",
        "",
        f"Machine: {machine()}, shared with other jobs (seconds are upper bounds). Command: `{COMMAND}`.",
        "Every ensemble blends the same members. CV columns are OOF on train. Honest: everything fitted on the",
        "OOF (weights, meta-model, thresholds) re-fitted without each held-out fold; for a stack that is nested",
        "(fold k's meta-model is fitted on the other folds' OOF; its thresholds on those folds' own out-of-fold",
        "stack). Test at 0.5: the test probabilities at 0.5 (multiclass: argmax); test tuned: the file",
        "`comp submit --dry-run` writes, scored by `comp evaluate` against `test_labels.csv`. Seconds: training",
        "(members, summed over folds) or building the ensemble (blending, honest CV and member scores).",
        "",
        "| dataset | run | CV at 0.5 | CV tuned | CV honest | test at 0.5 | test tuned | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {d} | {r} | {fmt(a)} | {fmt(b)} | {fmt(c)} | {fmt(e)} | {fmt(f)} | {s:.0f} |"
        for d, r, a, b, c, e, f, s in rows
    ]
    lines += ["", "Did the honest CV rank the ensemble methods in the same order as test tuned?"]
    lines += [f"- {name}: {order}" for name, order in orders.items()]
    write_section("stack", "\n".join(lines))


if __name__ == "__main__":
    main()
