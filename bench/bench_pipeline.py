"""The best comp pipeline trainable on this CPU, end to end. TweetEval emotion (5 folds): tfidf, nbsvm,
minilm-embeddings and fine-tuned all-MiniLM-L6-v2 with 3 seeds (each seed also scored alone: seeds 1 vs
3), a fold-safe pseudo-labelled MiniLM student of that run, then mean, weighted and stacked ensembles with
and without the student, and of the two fine-tuned runs alone. GoEmotions (`--goemotions`: 3 folds,
fine-tuning for `--epochs` epochs, one seed, within this CPU's hours): tfidf, minilm-embeddings,
fine-tuned MiniLM and their ensembles.

Every row: CV at 0.5, tuned, honest, test at 0.5 and tuned (the file `comp submit --dry-run` writes,
scored by `comp evaluate`), seconds; and whether the honest CV ranked the rows like test. Writes the
`pipeline` section of docs/benchmarks.md; results are kept in bench/work/pipeline-*.json after each
step, so a stopped run resumes (`comp train` resumes its folds).

    .venv/bin/python bench/bench_pipeline.py [--goemotions [--epochs 1]] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import re
import time

import numpy as np
from bench_quality import answer_matrix, test_scores, workspace
from bench_stack import same_order
from common import DOC, WORK, dataset, machine, write_section

from comp.atomic import write_text
from comp.ensemble import make_ensemble
from comp.metrics import score
from comp.train import train

COMMAND = ".venv/bin/python bench/bench_pipeline.py"
NAME = "tweeteval_emotion"
RESULTS = WORK / "pipeline-results.json"
EPOCHS = 2  # the fine-tuned rows of bench_transformer (78.3 / 77.4 test with one seed)
FINETUNED = "minilm-ft-3seeds"
STUDENT = "minilm-ft-pseudo"
CHEAP = ["tfidf", "nbsvm", "minilm-embeddings"]
GO, GO_FOLDS = "goemotions", 3
# Added with `--epochs 3` (the 1- and 2-epoch subsections predate them): the gradient-boosted meta-model and
# a second group with the nbsvm member, both chosen before their test scores were seen.
GO_EXTRAS_FROM = 3
LIGHTGBM = [("stack, lightgbm", {"method": "stack", "meta_model": "lightgbm"})]


def go_results(epochs: int):
    """Each `--epochs` has its own results file (and fine-tuned run); tfidf and the embeddings are shared."""
    return WORK / f"pipeline-goemotions-{epochs}ep.json"


BLENDS = [
    ("mean", {"method": "mean"}),
    ("weighted", {"method": "weighted"}),
    ("stack, logistic C=1", {"method": "stack", "meta_c": 1.0}),
    ("stack, logistic C=0.1", {"method": "stack", "meta_c": 0.1}),
]


def load_results(path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"rows": {}}


def save(path, results: dict) -> None:
    write_text(path, json.dumps(results, indent=1) + "\n")


def seed_rows(ws, Y_test: np.ndarray, scores_json: dict) -> list[dict]:
    """Each seed of the fine-tuned run alone: its OOF scores from scores.json's seed spread, its test
    macro-F1 from its own fold models' test probabilities (mean over folds, argmax). Seed 0 is trained with
    the seed a one-seed run uses (comp.seeds.task_seed), so its row is `--seeds 1`."""
    paths = ws.run(FINETUNED)
    rows = []
    for s, cv in enumerate(scores_json["seeds"]["per_seed"]):
        test = np.mean([np.load(paths.seed_dir(k, s) / "test.npy") for k in range(5)], axis=0)
        pred = np.eye(test.shape[1], dtype=np.uint8)[test.argmax(axis=1)]
        f1 = score("f1_macro", Y_test, pred, "multiclass")
        rows.append({"at_05": cv["at_0.5"], "tuned": cv["tuned"], "honest": cv["honest"], "test_05": f1, "test": f1})
    return rows


def train_row(ws, name: str, run: str, label: str, Y_test, results: dict, path, n_folds: int) -> None:
    """Train ``run`` (resuming its folds) and record its CV and test scores."""
    if run in results["rows"]:
        return
    result = train(ws, ws.configs_dir / f"{run}.yaml", n_folds=n_folds)
    s = result.scores
    at_05, tuned = test_scores(ws, name, run, Y_test)
    results["rows"][run] = {
        "label": label,
        "at_05": s.at_05,
        "tuned": s.tuned,
        "honest": s.honest,
        "test_05": at_05,
        "test": tuned,
        "seconds": sum(result.fold_seconds.values()),
    }
    save(path, results)
    print(run, results["rows"][run], flush=True)


def run_blends(
    ws, name: str, results: dict, path, Y_test: np.ndarray, members: list[str], tag: str, blends=BLENDS
) -> None:
    for label, kwargs in blends:
        run = f"bench-{tag}-" + label.replace(", ", "-").replace(" ", "").replace("=", "")
        if run in results["rows"]:
            continue
        started = time.perf_counter()
        result = make_ensemble(ws, members, run, force=True, **kwargs)
        seconds = time.perf_counter() - started
        s = result.scores
        weights = ", ".join(f"{k} {v:.2f}" for k, v in result.weights.items())
        at_05, tuned = test_scores(ws, name, run, Y_test)
        results["rows"][run] = {
            "label": f"{label} ({weights})",
            "at_05": s.at_05,
            "tuned": s.tuned,
            "honest": s.honest,
            "test_05": at_05,
            "test": tuned,
            "seconds": seconds,
            "blend": True,
        }
        save(path, results)
        print(run, results["rows"][run], flush=True)


def run_tweeteval() -> None:
    results = load_results(RESULTS)
    ws = workspace(NAME)
    _, Y_test = answer_matrix(ws, NAME)
    base = (ws.configs_dir / "minilm-finetune.yaml").read_text()
    (ws.configs_dir / f"{FINETUNED}.yaml").write_text(base + f"\nepochs: {EPOCHS}\nseeds: 3\n")
    (ws.configs_dir / f"{STUDENT}.yaml").write_text(
        base + f"\nepochs: {EPOCHS}\npseudo_labels: {{run: {FINETUNED}, mode: hard, min_confidence: 0.7}}\n"
    )
    for run in CHEAP:
        train_row(ws, NAME, run, f"member: {run}", Y_test, results, RESULTS, 5)
    if FINETUNED not in results["rows"]:
        train_row(ws, NAME, FINETUNED, "member: fine-tuned MiniLM, 3 seeds averaged", Y_test, results, RESULTS, 5)
        scores_json = json.loads(ws.run(FINETUNED).scores.read_text())
        for i, row in enumerate(seed_rows(ws, Y_test, scores_json)):
            results["rows"][f"{FINETUNED}-seed{i}"] = {
                "label": f"fine-tuned MiniLM, seed index {i} alone" + (" (= `--seeds 1`)" if i == 0 else ""),
                **row,
                "seconds": results["rows"][FINETUNED]["seconds"] / 3,
            }
        save(RESULTS, results)
    first = [*CHEAP, FINETUNED]
    run_blends(ws, NAME, results, RESULTS, Y_test, first, "ft")
    label = "member: fine-tuned MiniLM student, hard pseudo-labels (>= 0.7) from the 3-seed run"
    train_row(ws, NAME, STUDENT, label, Y_test, results, RESULTS, 5)
    run_blends(ws, NAME, results, RESULTS, Y_test, [*first, STUDENT], "student")
    run_blends(ws, NAME, results, RESULTS, Y_test, [FINETUNED, STUDENT], "finetuned")  # the weak members left out


def run_goemotions(epochs: int) -> None:
    path = go_results(epochs)
    results = load_results(path)
    results["epochs"] = epochs
    ws = workspace(GO)
    _, Y_test = answer_matrix(ws, GO)
    base = (ws.configs_dir / "minilm-finetune.yaml").read_text()
    finetuned = f"minilm-ft-{epochs}ep"
    (ws.configs_dir / f"{finetuned}.yaml").write_text(base + f"\nepochs: {epochs}\n")
    members = {
        "tfidf": "member: tfidf",
        "minilm-embeddings": "member: minilm-embeddings",
        finetuned: f"member: fine-tuned MiniLM, {epochs} epoch(s), one seed",
    }
    for run, label in members.items():
        train_row(ws, GO, run, label, Y_test, results, path, GO_FOLDS)
    run_blends(ws, GO, results, path, Y_test, list(members), f"go{epochs}")
    if epochs >= GO_EXTRAS_FROM:
        run_blends(ws, GO, results, path, Y_test, list(members), f"go{epochs}", LIGHTGBM)
        train_row(ws, GO, "nbsvm", "member: nbsvm", Y_test, results, path, GO_FOLDS)
        run_blends(ws, GO, results, path, Y_test, [*members, "nbsvm"], f"go{epochs}-nbsvm", BLENDS + LIGHTGBM)


def table(rows: dict) -> list[str]:
    best = max(rows.values(), key=lambda r: r["test"])
    lines = [
        "| run | CV at 0.5 | CV tuned | CV honest | test at 0.5 | test tuned | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows.values():
        mark = "**" if r is best else ""
        lines.append(
            f"| {r['label']} | {r['at_05']:.4f} | {r['tuned']:.4f} | {r['honest']:.4f} | {r['test_05']:.4f} | "
            f"{mark}{r['test']:.4f}{mark} | {r['seconds']:.0f} |"
        )
    return lines


def findings(rows: dict, target: float, references: str) -> list[str]:
    best = max(rows.values(), key=lambda r: r["test"])
    best_cv = max(rows.values(), key=lambda r: r["honest"])
    blends = [r for r in rows.values() if r.get("blend")]
    order = same_order([r["honest"] for r in rows.values()], [r["test"] for r in rows.values()])
    blend_order = same_order([r["honest"] for r in blends], [r["test"] for r in blends]) if blends else "-"
    reached = "reached" if best["test"] >= target else "not reached"
    return [
        f"- Best test macro-F1: **{best['test']:.4f}** ({best['label']}); {references}: target {target:.3f} "
        f"**{reached}**.",
        f"- The row with the best honest CV: {best_cv['label']} (honest {best_cv['honest']:.4f}, test "
        f"{best_cv['test']:.4f}).",
        f"- Did the honest CV rank all rows in the same order as test tuned? {order}; the ensembles alone: "
        f"{blend_order}.",
    ]


def kept_subsection(heading: str) -> list[str]:
    """The lines of this section's subsection starting ``### {heading}`` as docs/benchmarks.md has it now:
    a subsection whose results file is not on this machine is kept as it was measured, not dropped."""
    doc = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    match = re.search(r"<!-- bench:pipeline -->(.*?)<!-- /bench:pipeline -->", doc, re.S)
    if not match:
        return []
    parts = re.split(r"(?m)^(?=### )", match.group(1))
    for part in parts:
        if part.startswith(f"### {heading}"):
            return ["", *part.strip().splitlines()]
    return []


def kept_goemotions() -> dict[int, list[str]]:
    """The GoEmotions subsections docs/benchmarks.md has now, by their `--epochs`."""
    kept = {}
    for epochs in range(1, 21):
        lines = kept_subsection(f"GoEmotions ({GO_FOLDS} folds, 28 labels): `{COMMAND} --goemotions --epochs {epochs}`")
        if lines:
            kept[epochs] = lines
    return kept


def goemotions_lines(results: dict) -> list[str]:
    rows, epochs = results["rows"], results["epochs"]
    finetuned = next((r for k, r in rows.items() if k.startswith("minilm-ft")), None)
    return [
        "",
        f"### GoEmotions ({GO_FOLDS} folds, 28 labels): `{COMMAND} --goemotions --epochs {epochs}`",
        "",
        f"{GO_FOLDS} folds and {epochs} fine-tuning epoch(s), one seed: the fine-tuning took "
        f"{finetuned['seconds'] / 60:.0f} minutes of folds on this CPU."
        if finetuned
        else f"{GO_FOLDS} folds and {epochs} fine-tuning epoch(s), one seed.",
        "",
        *table(rows),
        "",
        *findings(rows, 0.52, "the GoEmotions paper's BERT-base 0.46, the best result we know 0.523"),
    ]


def report(tweeteval: dict, goemotions: dict[int, dict]) -> None:
    lines = [
        "## The whole pipeline: models trainable on this CPU, then ensembles (macro-F1)",
        "",
        f"Machine: {machine()}, shared with other jobs (seconds are upper bounds). `--report-only` rewrites this",
        "section from bench/work/pipeline-results.json and pipeline-goemotions-<epochs>ep.json (a subsection",
        "whose file is absent is kept as it was). CV columns are OOF on",
        "train; honest re-fits thresholds, blend weights or the meta-model without each held-out fold. Test",
        "at 0.5: the test probabilities at 0.5 (multiclass: argmax); test tuned: the file `comp submit",
        "--dry-run` writes, scored by `comp evaluate` against `test_labels.csv`. Seconds: summed fold",
        "training (ensembles: building them). Fine-tuned rows: `configs/minilm-finetune.yaml`",
        "(all-MiniLM-L6-v2, 22M parameters) with the epochs named below.",
    ]
    rows = tweeteval["rows"]
    if rows:
        lines += [
            "",
            f"### TweetEval emotion (5 folds): `{COMMAND}`",
            "",
            f"`epochs: {EPOCHS}`. The 3-seed run trains every fold with 3 seeds and averages the probabilities",
            "(`seeds: 3`); each seed's own OOF and test predictions are scored alone next to it, seed index 0",
            "being the one-seed run. The student is the same config plus `pseudo_labels: {run: minilm-ft-3seeds,",
            "mode: hard, min_confidence: 0.7}`: fold k also trains on the test rows that the teacher's fold-k",
            "models label with probability at least 0.7, so its fold-k OOF stays honest. Multiclass argmax: CV at",
            "0.5, tuned and honest coincide for single runs.",
            "",
            *table(rows),
            "",
            *findings(
                rows,
                0.802,
                "the TweetEval leaderboard's best entry (TimeLMs-2021) is 0.802, BERTweet 0.793, RoBERTa-base 0.761",
            ),
        ]
        blends = [r for r in rows.values() if r.get("blend")]
        if blends and FINETUNED in rows:
            top, alone = max(blends, key=lambda r: r["honest"]), rows[FINETUNED]
            lines.append(
                f"- The ensemble with the best honest CV against the 3-seed run alone: honest {top['honest']:.4f} vs "
                f"{alone['honest']:.4f}, test {top['test']:.4f} vs {alone['test']:.4f}."
            )
        seeds = [rows[k] for k in rows if k.startswith(f"{FINETUNED}-seed")]
        if seeds and FINETUNED in rows:
            t = [r["test"] for r in seeds]
            lines.append(
                f"- Seeds 1 vs 3: one seed alone {min(t):.4f} to {max(t):.4f} on test (seed 0: {t[0]:.4f}); the 3"
                f" seeds averaged {rows[FINETUNED]['test']:.4f}."
            )
    else:
        lines += kept_subsection("TweetEval emotion")
    subsections = kept_goemotions()
    subsections.update({epochs: goemotions_lines(r) for epochs, r in goemotions.items() if r["rows"]})
    for epochs in sorted(subsections):
        lines += subsections[epochs]
    write_section("pipeline", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--goemotions", action="store_true", help="the GoEmotions rows instead of TweetEval's")
    parser.add_argument("--epochs", type=int, default=1, help="GoEmotions: fine-tuning epochs")
    args = parser.parse_args()
    if not args.report_only:
        name = GO if args.goemotions else NAME
        if dataset(name) is None:
            print(f"skipping {name}: ../shared/data/{name} not found")
            return
        run_goemotions(args.epochs) if args.goemotions else run_tweeteval()
    go = {int(p.stem.split("-")[-1][:-2]): load_results(p) for p in WORK.glob("pipeline-goemotions-*ep.json")}
    report(load_results(RESULTS), go)


if __name__ == "__main__":
    main()
