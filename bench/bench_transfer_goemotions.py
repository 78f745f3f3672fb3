"""Intermediate fine-tuning on GoEmotions for TweetEval emotion, side by side with the plain recipe.

bench_transfer.py found that a binary sentiment task collapses MiniLM's features (PC1 share 0.999) and
loses 0.015-0.151 test; its advice was a rich intermediate task. GoEmotions is one: 28 emotion labels
(anger, joy, optimism and sadness among them) on 43k Reddit comments, against TweetEval emotion's 3,257
training tweets. all-MiniLM-L6-v2 is fine-tuned on GoEmotions' train split with comp itself (a second
workspace, `save_models: true`, fold 0 of 8, `INTER_EPOCHS` epochs), and that fold's saved model is the
`backbone:` of the emotion config: comp loads its encoder and trains a fresh 4-class head. Every emotion
run uses the same 5-fold file, 2 epochs and seed as bench_pipeline's seed index 0 row, so the only
difference is the starting weights; the blends of the plain run with the GoEmotions-first run are
scored too, and the PC1 share of the pooled features as in bench_transfer.py. The GoEmotions-first
config is also trained with 3 seeds per fold (`--seeds 3`) and blended with the plain run.

GoEmotions rows whose text TweetEval emotion also holds (train, dev or test; lower-cased,
whitespace-collapsed) are left out, so no emotion test tweet is trained on.

    .venv/bin/python bench/bench_transfer_goemotions.py [--report-only]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from bench_pipeline import BLENDS, load_results, save, table
from bench_quality import answer_matrix, test_scores
from bench_transfer import (
    COLLAPSE_TEXTS,
    EPOCHS,
    FOLDS,
    INTER_FOLDS,
    PLAIN,
    minilm_path_str,
    pc1_share,
    read_csv,
    without_emotion_texts,
)
from bench_transfer import workspace_from as workspace
from common import WORK, dataset, machine, write_section

from comp.ensemble import make_ensemble
from comp.train import train

COMMAND = ".venv/bin/python bench/bench_transfer_goemotions.py"
TARGET, SOURCE = "tweeteval_emotion", "goemotions"
RESULTS = WORK / "transfer-goemotions-results.json"
INTER_EPOCHS = 2  # GoEmotions' 28 labels need more than one epoch (bench_pipeline: 1 epoch 0.283 test, 2: 0.397)
INTER_RUN = "minilm-goemotions"
STILTS = "minilm-ft-goemotions-first"
STILTS_SEEDS = f"{STILTS}-3seeds"  # the same config trained with 3 seeds per fold, probabilities averaged


def intermediate_data() -> tuple[Path, dict]:
    """A competition folder of GoEmotions' train split minus every text TweetEval emotion holds (test:
    GoEmotions' dev split, whose predictions are not used)."""
    out = WORK / "data" / "goemotions_for_transfer"
    facts_path = out / "facts.json"
    if facts_path.exists():
        return out, json.loads(facts_path.read_text())
    src = dataset(SOURCE)
    rows, shared = without_emotion_texts(read_csv(src / "train.csv"))
    dev = read_csv(src / "dev.csv")
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "train.csv", index=False)
    dev[["id", "text"]].to_csv(out / "test.csv", index=False)
    labels = [c for c in dev.columns if c not in ("id", "text")]
    dev[["id"]].assign(**{c: 0 for c in labels}).to_csv(out / "sample_submission.csv", index=False)
    facts = {"rows": len(rows), "dropped_shared_with_emotion": int(shared.sum())}
    facts_path.write_text(json.dumps(facts) + "\n")
    return out, facts


def intermediate_model(results: dict, texts: list[str]) -> Path:
    """MiniLM fine-tuned on GoEmotions (fold 0 of 8): the saved fold model's folder."""
    source, facts = intermediate_data()
    ws = workspace("goemotions_for_transfer", source)
    config = ws.configs_dir / f"{INTER_RUN}.yaml"
    base = (ws.configs_dir / "minilm-finetune.yaml").read_text()
    config.write_text(base + f"\nepochs: {INTER_EPOCHS}\nsave_models: true\n")
    train(ws, config, n_folds=INTER_FOLDS, only_fold=0)
    model = ws.run(INTER_RUN).fold_model_dir(0)
    if "intermediate" not in results:
        done = json.loads(ws.run(INTER_RUN).fold_done(0).read_text())
        results["intermediate"] = {
            **facts,
            "seconds": done["seconds"],
            "fold_0": done,
            "pc1_share": pc1_share(str(model), texts),
            "base_pc1_share": pc1_share(minilm_path_str(), texts),
        }
        save(RESULTS, results)
    return model


def row(ws, run: str, label: str, Y_test, results: dict, make) -> None:
    """Train or blend ``run`` (``make()`` returns the result and its weights) and record its row."""
    if run in results["rows"]:
        return
    started = time.perf_counter()
    result, weights = make()
    seconds = time.perf_counter() - started
    s = result.scores
    at_05, tuned = test_scores(ws, TARGET, run, Y_test)
    results["rows"][run] = {
        "label": label + (f" ({weights})" if weights else ""),
        "at_05": s.at_05,
        "tuned": s.tuned,
        "honest": s.honest,
        "test_05": at_05,
        "test": tuned,
        "seconds": sum(result.fold_seconds.values()) if hasattr(result, "fold_seconds") else seconds,
        **({"blend": True} if weights else {}),
    }
    save(RESULTS, results)
    print(run, results["rows"][run], flush=True)


def run() -> None:
    results = load_results(RESULTS)
    ws = workspace(TARGET, dataset(TARGET))
    _, Y_test = answer_matrix(ws, TARGET)
    text_column = ws.load_settings().text_columns[0]
    texts = pd.read_csv(ws.train_csv, dtype=str, keep_default_na=False)[text_column].head(COLLAPSE_TEXTS).tolist()
    model = intermediate_model(results, texts)
    base = (ws.configs_dir / "minilm-finetune.yaml").read_text() + f"\nepochs: {EPOCHS}\n"
    (ws.configs_dir / f"{PLAIN}.yaml").write_text(base)
    for name in (STILTS, STILTS_SEEDS):
        (ws.configs_dir / f"{name}.yaml").write_text(base + f"backbone: {model}\n")
    for name, label in (
        (STILTS, "MiniLM fine-tuned on GoEmotions first, then on emotion (STILTs)"),
        (PLAIN, "MiniLM fine-tuned on emotion only (the plain recipe)"),
    ):
        row(
            ws,
            name,
            label,
            Y_test,
            results,
            lambda n=name: (train(ws, ws.configs_dir / f"{n}.yaml", n_folds=FOLDS), ""),
        )
    blend_rows(ws, Y_test, results, [PLAIN, STILTS], "bench-transfer-go-")
    row(
        ws,
        STILTS_SEEDS,
        "MiniLM fine-tuned on GoEmotions first, then on emotion with 3 seeds per fold",
        Y_test,
        results,
        lambda: (train(ws, ws.configs_dir / f"{STILTS_SEEDS}.yaml", n_folds=FOLDS, seeds=3), ""),
    )
    blend_rows(ws, Y_test, results, [PLAIN, STILTS_SEEDS], "bench-transfer-go3-")


def blend_rows(ws, Y_test, results: dict, members: list[str], prefix: str) -> None:
    """One row per blend method of ``members``, named ``prefix`` + the method."""
    for label, kwargs in BLENDS:
        name = prefix + label.replace(", ", "-").replace(" ", "").replace("=", "")

        def blend(name=name, kwargs=kwargs):
            result = make_ensemble(ws, members, name, force=True, **kwargs)
            return result, ", ".join(f"{k} {v:.2f}" for k, v in result.weights.items())

        row(ws, name, label, Y_test, results, blend)


def report(results: dict) -> None:
    rows, inter = results["rows"], results.get("intermediate")
    if not rows or inter is None:
        return
    lines = [
        "## Intermediate fine-tuning on GoEmotions for TweetEval emotion (macro-F1)",
        "",
        f"`{COMMAND}`. Machine: {machine()}. all-MiniLM-L6-v2 is fine-tuned for {INTER_EPOCHS} epochs on",
        f"GoEmotions' train split, fold 0 of {INTER_FOLDS} "
        f"({inter['fold_0']['train_rows']:,} of {inter['rows']:,} rows; "
        f"{inter['dropped_shared_with_emotion']} rows whose text TweetEval emotion also holds were left out; "
        f"{inter['seconds'] / 60:.0f} minutes),",
        "and that fold's saved model is the `backbone:` of the emotion config (a fresh 4-class head). Every",
        f"emotion run: {FOLDS} folds (the same fold file), {EPOCHS} epochs, one seed unless its label says 3 (their",
        "probabilities averaged per fold; seed index 0 is the one-seed run): the plain run is the",
        "pipeline section's seed index 0 row. Test tuned is the `comp submit --dry-run` file scored by",
        "`comp evaluate`. Multiclass argmax: CV at 0.5, tuned and honest coincide for single runs.",
        "",
        *table(rows),
        "",
        f"- PC1 share of the pooled features of {COLLAPSE_TEXTS} emotion training texts: pretrained "
        f"{inter['base_pc1_share']:.3f}, after GoEmotions {inter['pc1_share']:.3f} (after polar tweets: 0.999, "
        "see the STILTs section above).",
    ]
    plain, stilts = rows.get(PLAIN), rows.get(STILTS)
    if plain and stilts:
        lines.append(
            f"- GoEmotions first against the plain recipe: test {stilts['test'] - plain['test']:+.4f}, honest CV "
            f"{stilts['honest'] - plain['honest']:+.4f} (seed-to-seed spread of the plain recipe in the pipeline "
            "section: 0.0045 test, 0.011 CV)."
        )
    seeded = rows.get(STILTS_SEEDS)
    if stilts and seeded:
        lines.append(
            f"- GoEmotions first, 3 seeds per fold against 1: test {seeded['test'] - stilts['test']:+.4f}, honest "
            f"CV {seeded['honest'] - stilts['honest']:+.4f}."
        )
    best = max(rows.values(), key=lambda r: r["test"])
    by_cv = max(rows.values(), key=lambda r: r["honest"])
    reached = "reached" if best["test"] >= 0.802 else "not reached"
    lines += [
        f"- Best test macro-F1: **{best['test']:.4f}** ({best['label']}); issue target 0.802 (TimeLMs-2021): "
        f"**{reached}**.",
        f"- The row with the best honest CV: {by_cv['label']} "
        f"(honest {by_cv['honest']:.4f}, test {by_cv['test']:.4f}).",
    ]
    write_section("transfer-goemotions", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        if dataset(TARGET) is None or dataset(SOURCE) is None:
            print(f"skipping: ../shared/data/{TARGET} or {SOURCE} not found")
            return
        run()
    report(load_results(RESULTS))


if __name__ == "__main__":
    main()
