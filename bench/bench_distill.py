"""Pseudo-labels and distillation side by side: tfidf students of a cheap teacher (minilm-embeddings,
or nbsvm with --teacher nbsvm), 5 folds, against the plain tfidf student. Every row has CV at 0.5, tuned
and honest, and test scored against the hidden answer key as a user gets it (the file `comp submit
--dry-run` writes, scored by `comp evaluate`). The point: fold-safe students' honest CV tracks test,
the OOF-distilled student's CV is optimistic (it is marked so), and by how much. Writes the `distill`
section of docs/benchmarks.md.

    .venv/bin/python bench/bench_distill.py [--datasets tweeteval_emotion] [--teacher minilm-embeddings|nbsvm]
"""

from __future__ import annotations

import argparse
import time

from bench_quality import answer_matrix, test_scores, workspace
from bench_stack import same_order
from common import dataset, machine, write_section

from comp.train import train

COMMAND = ".venv/bin/python bench/bench_distill.py"

STUDENTS = [  # (run, what the tfidf config gains, label)
    ("student-plain", "", "tfidf, no teacher"),
    ("student-pseudo-soft", "pseudo_labels: {{run: {t}, mode: soft, weight: 0.5}}", "pseudo-labels, soft, weight 0.5"),
    (
        "student-pseudo-hard",
        "pseudo_labels: {{run: {t}, mode: hard, min_confidence: 0.7}}",
        "pseudo-labels, hard, min_confidence 0.7",
    ),
    (
        "student-distill-safe",
        "distill: {{run: {t}, mode: fold_safe, alpha: 0.5, temperature: 2.0}}",
        "distill fold_safe, alpha 0.5, T 2",
    ),
    (
        "student-distill-oof",
        "distill: {{run: {t}, mode: oof, alpha: 0.5, temperature: 2.0}}",
        "distill oof, alpha 0.5, T 2 (cv optimistic)",
    ),
]


def bench(name: str, teacher: str) -> tuple[list[tuple], str, dict]:
    ws = workspace(name)
    _, Y_test = answer_matrix(ws, name)
    base = (ws.configs_dir / "tfidf.yaml").read_text()
    teacher_run = f"teacher-{teacher}"
    (ws.configs_dir / f"{teacher_run}.yaml").write_text(
        (ws.configs_dir / f"{teacher}.yaml").read_text() + "\nsave_models: true\n"
    )
    rows = []

    def row(run: str, label: str, seconds: float, scores) -> None:
        rows.append(
            (name, run, label, scores.at_05, scores.tuned, scores.honest, *test_scores(ws, name, run, Y_test), seconds)
        )
        print(rows[-1], flush=True)

    result = train(ws, ws.configs_dir / f"{teacher_run}.yaml", n_folds=5)
    row(teacher_run, f"teacher: {teacher}", sum(result.fold_seconds.values()), result.scores)
    for run, extra, label in STUDENTS:
        (ws.configs_dir / f"{run}.yaml").write_text(base + "\n" + extra.format(t=teacher_run) + "\n")
        started = time.perf_counter()
        result = train(ws, ws.configs_dir / f"{run}.yaml", n_folds=5)
        row(run, label, time.perf_counter() - started, result.scores)
    students = rows[1:]
    order = same_order([r[5] for r in students], [r[7] for r in students])
    gaps = {r[1]: r[5] - r[7] for r in students}  # honest CV minus test tuned
    return rows, order, gaps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=["tweeteval_emotion"])
    parser.add_argument("--teacher", default="minilm-embeddings", choices=["minilm-embeddings", "nbsvm"])
    args = parser.parse_args()
    rows, orders, gaps = [], {}, {}
    for name in args.datasets:
        if dataset(name) is None:
            print(f"skipping {name}: ../shared/data/{name} not found")
            continue
        found, orders[name], gaps[name] = bench(name, args.teacher)
        rows += found
    if not rows:
        return
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    command = COMMAND + ("" if args.teacher == "minilm-embeddings" else f" --teacher {args.teacher}")
    lines = [
        "## Pseudo-labels and distillation: tfidf students of one teacher (5 folds, macro-F1)",
        "",
        f"Machine: {machine()}, shared with other jobs (seconds are upper bounds). Command: `{command}`.",
        f"Teacher: `{args.teacher}` with `save_models: true`; every student is the shipped tfidf config plus the",
        "setting named in its row. Pseudo-labels: fold k trains also on test.csv's rows labelled by the teacher's",
        "fold-k model. Distill fold_safe: fold k's training rows get the teacher's fold-k model's (in-sample)",
        "predictions as soft targets; distill oof: the teacher's OOF predictions, which carry fold k's labels, so",
        "that run's CV is marked `cv_optimistic`. Test at 0.5: argmax of the test probabilities; test tuned: the",
        "file `comp submit --dry-run` writes, scored by `comp evaluate` against `test_labels.csv`. Seconds: the",
        "student's whole `comp train` (the teacher: its summed fold times).",
        "",
        "| dataset | run | setting | CV at 0.5 | CV tuned | CV honest | test at 0.5 | test tuned | honest - test | "
        "seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {d} | {r} | {label} | {fmt(a)} | {fmt(b)} | {fmt(c)} | {fmt(e)} | {fmt(f)} | {c - f:+.4f} | {s:.0f} |"
        for d, r, label, a, b, c, e, f, s in rows
    ]
    lines += [
        "",
        "How much OOF distillation flatters the CV (honest CV minus test tuned, against the fold-safe student's):",
    ]
    lines += [
        f"- {name}: oof {g['student-distill-oof']:+.4f}, fold_safe {g['student-distill-safe']:+.4f}, "
        f"no teacher {g['student-plain']:+.4f}"
        for name, g in gaps.items()
    ]
    lines += ["", "Did the students' honest CV rank them in the same order as test tuned?"]
    lines += [f"- {name}: {order}" for name, order in orders.items()]
    write_section("distill", "\n".join(lines))


if __name__ == "__main__":
    main()
