"""Intermediate fine-tuning (STILTs: Phang et al. 2018) for TweetEval emotion, side by side with the plain
recipe. all-MiniLM-L6-v2 is first fine-tuned for one epoch on the polar tweets of TweetEval sentiment's
train split (negative / positive: a related label on the same domain), with comp itself: a second
workspace, `save_models: true`, one fold of 8 (`--fold 0`). The emotion config then names that fold's
saved model as its `backbone:`; comp loads its encoder and trains a fresh 4-class head (the saved
head has another size). Every emotion run uses the same 5-fold file, 2 epochs and seed, so the only
difference is the starting weights; the blends of the plain run with each intermediate one are scored too.

Each intermediate variant (VARIANTS: the recipe's learning rate, and a gentler one) is its own run in the
intermediate workspace. A binary intermediate task can collapse the encoder's features onto one direction
(Aghajanyan et al. 2020, "representational collapse"), which the emotion head then has to undo: for the
base model and each intermediate model the bench records the share of variance that the first principal
component holds in the pooled features of 512 emotion training texts.

The intermediate rows are checked against every TweetEval emotion text (train, dev, test), lower-cased
and whitespace-collapsed: a tweet in both would carry the emotion test set into training.

    .venv/bin/python bench/bench_transfer.py [--variants recipe,gentle] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import pandas as pd
from bench_pipeline import BLENDS, load_results, save, table
from bench_quality import answer_matrix, test_scores
from bench_stack import same_order
from common import WORK, dataset, machine, write_section

from comp.config import example_configs
from comp.ensemble import make_ensemble
from comp.fetch import fetch_local
from comp.train import train
from comp.workspace import Workspace, init_workspace

COMMAND = ".venv/bin/python bench/bench_transfer.py"
TARGET, SOURCE = "tweeteval_emotion", "tweeteval_sentiment"
RESULTS = WORK / "transfer-results.json"
EPOCHS, FOLDS = 2, 5  # the protocol of bench_pipeline's fine-tuned rows
INTER_FOLDS = 8  # fold 0 of 8: the intermediate model trains on 7/8 of the polar tweets
PLAIN = "minilm-ft"
# variant -> the intermediate data ("polar": negative / positive; "three": negative / neutral / positive,
# sampled to the polar row count so that both train for the same steps), its extra config lines, and words
# for the report; the emotion run of variant V is minilm-ft-stilts[-V]
VARIANTS = {
    "recipe": {"data": "polar", "config": "", "about": "polar tweets (the recipe's lr 1e-4)"},
    "gentle": {"data": "polar", "config": "lr: 2.0e-5\n", "about": "polar tweets (lr 2e-5)"},
    "three": {"data": "three", "config": "", "about": "3-class sentiment tweets (lr 1e-4)"},
}
INTER_DATA = {"polar": ("tweeteval_polarity", ["0", "2"]), "three": ("tweeteval_sentiment3", ["0", "1", "2"])}
COLLAPSE_TEXTS = 512


def stilts_run(variant: str) -> str:
    return "minilm-ft-stilts" if variant == "recipe" else f"minilm-ft-stilts-{variant}"


def inter_run(variant: str) -> str:
    if variant == "three":
        return "minilm-sentiment3"
    return "minilm-polarity" if variant == "recipe" else f"minilm-polarity-{variant}"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", str(text).lower()).strip()


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def without_emotion_texts(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """``rows`` minus those whose text any TweetEval emotion split holds (lower-cased, whitespace
    collapsed), and the mask of the rows left out."""
    emotion = {_norm(t) for f in ("train.csv", "dev.csv", "test.csv") for t in read_csv(dataset(TARGET) / f)["text"]}
    shared = rows["text"].map(_norm).isin(emotion)
    return rows[~shared], shared


def intermediate_data(kind: str) -> tuple[Path, dict]:
    """A competition folder of TweetEval sentiment's tweets with the labels of ``kind`` (train: train
    split; test: dev split, whose predictions are not used), minus any text that TweetEval emotion also
    holds; "three" is sampled (seed 0) to the row count of "polar"."""
    folder, labels = INTER_DATA[kind]
    out = WORK / "data" / folder
    facts_path = out / "facts.json"
    if facts_path.exists():
        return out, json.loads(facts_path.read_text())
    src = dataset(SOURCE)
    train_rows = read_csv(src / "train.csv")
    rows, shared = without_emotion_texts(train_rows[train_rows["label"].isin(labels)])
    if kind != "polar":
        rows = rows.sample(n=intermediate_data("polar")[1]["rows"], random_state=0).sort_index()
    dev = read_csv(src / "dev.csv")
    dev = dev[dev["label"].isin(labels)]
    out.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out / "train.csv", index=False)
    dev[["id", "text"]].to_csv(out / "test.csv", index=False)
    dev.assign(label=labels[0])[["id", "label"]].to_csv(out / "sample_submission.csv", index=False)
    facts = {"rows": len(rows), "dropped_shared_with_emotion": int(shared.sum())}
    facts_path.write_text(json.dumps(facts) + "\n")
    return out, facts


def workspace_from(name: str, source: Path) -> Workspace:
    root = WORK / name
    if not (root / "comp.yaml").exists():
        ws = init_workspace(name, root, example_configs())
        fetch_local(ws, source)
    return Workspace(root)


def pc1_share(model_dir: str, texts: list[str]) -> float:
    """Share of variance held by the first principal component of the pooled features (BERT's pooler
    output: what the `pooling: auto` head reads) over ``texts``: near 1 when the features collapsed onto
    one direction."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        pooled = model(**batch).pooler_output.double()
    variances = torch.linalg.svdvals(pooled - pooled.mean(0)) ** 2
    return float(variances[0] / variances.sum())


def intermediate_model(variant: str, results: dict, texts: list[str]) -> Path:
    """Fine-tune MiniLM on the variant's sentiment tweets (fold 0 of 8, one epoch); the saved fold model's
    folder."""
    kind = VARIANTS[variant]["data"]
    source, facts = intermediate_data(kind)
    ws = workspace_from(INTER_DATA[kind][0], source)
    name = inter_run(variant)
    config = ws.configs_dir / f"{name}.yaml"
    base = (ws.configs_dir / "minilm-finetune.yaml").read_text()
    config.write_text(base + "\nepochs: 1\nsave_models: true\n" + VARIANTS[variant]["config"])
    train(ws, config, n_folds=INTER_FOLDS, only_fold=0)
    model = ws.run(name).fold_model_dir(0)
    inter = results.setdefault("intermediate", {})
    for key in ("seconds", "fold_0", "rows", "dropped_shared_with_emotion"):  # the layout before variants
        inter.pop(key, None)
    if variant not in inter.get("variants", {}) or "rows" not in inter["variants"][variant]:
        done = json.loads(ws.run(name).fold_done(0).read_text())
        inter.setdefault("variants", {})[variant] = {
            **facts,
            "seconds": done["seconds"],
            "pc1_share": pc1_share(str(model), texts),
            "fold_0": done,
        }
    if "base_pc1_share" not in inter:
        inter["base_pc1_share"] = pc1_share(minilm_path_str(), texts)
    return model


def minilm_path_str() -> str:
    from comp.models.hf.hub import minilm_path

    return str(minilm_path())


def train_row(ws: Workspace, run: str, label: str, Y_test, results: dict) -> None:
    if run in results["rows"]:
        return
    result = train(ws, ws.configs_dir / f"{run}.yaml", n_folds=FOLDS)
    s = result.scores
    at_05, tuned = test_scores(ws, TARGET, run, Y_test)
    results["rows"][run] = {
        "label": label,
        "at_05": s.at_05,
        "tuned": s.tuned,
        "honest": s.honest,
        "test_05": at_05,
        "test": tuned,
        "seconds": sum(result.fold_seconds.values()),
    }
    save(RESULTS, results)
    print(run, results["rows"][run], flush=True)


def run(variants: list[str]) -> None:
    results = load_results(RESULTS)
    ws = workspace_from(TARGET, dataset(TARGET))
    _, Y_test = answer_matrix(ws, TARGET)
    text_column = ws.load_settings().text_columns[0]
    texts = pd.read_csv(ws.train_csv, dtype=str, keep_default_na=False)[text_column].head(COLLAPSE_TEXTS).tolist()
    base = (ws.configs_dir / "minilm-finetune.yaml").read_text() + f"\nepochs: {EPOCHS}\n"
    (ws.configs_dir / f"{PLAIN}.yaml").write_text(base)
    for variant in variants:
        model = intermediate_model(variant, results, texts)
        save(RESULTS, results)
        run_name = stilts_run(variant)
        (ws.configs_dir / f"{run_name}.yaml").write_text(base + f"backbone: {model}\n")
        label = f"MiniLM fine-tuned on {VARIANTS[variant]['about']} first, then on emotion (STILTs)"
        if run_name in results["rows"]:  # a row measured under another wording
            results["rows"][run_name]["label"] = label
            save(RESULTS, results)
        train_row(ws, run_name, label, Y_test, results)
        if variant == variants[0]:
            train_row(ws, PLAIN, "MiniLM fine-tuned on emotion only (the plain recipe)", Y_test, results)
        blend_rows(ws, variant, Y_test, results)


def blend_rows(ws: Workspace, variant: str, Y_test, results: dict) -> None:
    """The blends of the plain run and the variant's emotion run."""
    tag = "" if variant == "recipe" else f"{variant}-"
    for label, kwargs in BLENDS:
        name = f"bench-transfer-{tag}" + label.replace(", ", "-").replace(" ", "").replace("=", "")
        if name in results["rows"]:
            continue
        started = time.perf_counter()
        blend = make_ensemble(ws, [PLAIN, stilts_run(variant)], name, force=True, **kwargs)
        at_05, tuned = test_scores(ws, TARGET, name, Y_test)
        weights = ", ".join(f"{k} {v:.2f}" for k, v in blend.weights.items())
        s = blend.scores
        results["rows"][name] = {
            "label": f"{label} ({weights})",
            "at_05": s.at_05,
            "tuned": s.tuned,
            "honest": s.honest,
            "test_05": at_05,
            "test": tuned,
            "seconds": time.perf_counter() - started,
            "blend": True,
        }
        save(RESULTS, results)


def report(results: dict) -> None:
    rows, inter = results["rows"], results.get("intermediate")
    if not rows or inter is None or not inter.get("variants"):
        return
    lines = [
        "## Intermediate fine-tuning (STILTs) on TweetEval emotion (macro-F1)",
        "",
        f"`{COMMAND}`. Machine: {machine()}. all-MiniLM-L6-v2 is fine-tuned for one epoch on tweets of",
        f"TweetEval sentiment's train split, fold 0 of {INTER_FOLDS} ("
        + ", ".join(sorted({f"{d['rows']:,}" for d in inter["variants"].values()}))
        + " rows; "
        + ", ".join(sorted({str(d["dropped_shared_with_emotion"]) for d in inter["variants"].values()}))
        + " rows whose text TweetEval emotion also holds were left out), and that fold's saved model is",
        f"the `backbone:` of the emotion config. Every emotion run: {FOLDS} folds (the same fold file),",
        f"{EPOCHS} epochs, one seed: the plain run is the pipeline section's seed index 0 row (the same",
        "config, folds and seed). Test tuned is the `comp submit --dry-run` file scored by `comp evaluate`.",
        "Multiclass argmax: CV at 0.5, tuned and honest coincide for single runs.",
        "",
        *table(rows),
        "",
        f"Collapse: the share of variance of the first principal component of the pooled features of {COLLAPSE_TEXTS}",
        "emotion training texts (the features the `pooling: auto` head reads; near 1: one direction left).",
        "",
        "| starting model | intermediate minutes | PC1 share |",
        "|---|---:|---:|",
        f"| all-MiniLM-L6-v2 (pretrained) | | {inter['base_pc1_share']:.3f} |",
        *(
            f"| after {VARIANTS[v]['about']} | {d['seconds'] / 60:.0f} | {d['pc1_share']:.3f} |"
            for v, d in inter["variants"].items()
        ),
        "",
    ]
    plain = rows.get(PLAIN)
    for variant in inter["variants"]:
        stilts = rows.get(stilts_run(variant))
        if plain and stilts:
            lines.append(
                f"- Starting from the model fine-tuned on {VARIANTS[variant]['about']}: test "
                f"{stilts['test'] - plain['test']:+.4f}, honest CV {stilts['honest'] - plain['honest']:+.4f} "
                "against the plain recipe (seed-to-seed spread of the plain recipe in the pipeline section: "
                "0.0045 test, 0.011 CV)."
            )
    measured = [v for v in inter["variants"] if stilts_run(v) in rows]
    if len(measured) > 1:
        shares = [inter["variants"][v]["pc1_share"] for v in measured]
        tests = [rows[stilts_run(v)]["test"] for v in measured]
        lines.append(
            "- Did less collapse (a lower PC1 share) mean a better emotion run on test? "
            + same_order([-x for x in shares], tests)
            + " ("
            + ", ".join(f"{x:.3f}: {t:.4f}" for x, t in zip(shares, tests, strict=True))
            + ")."
        )
    best = max(rows.values(), key=lambda r: r["test"])
    reached = "reached" if best["test"] >= 0.802 else "not reached"
    lines += [
        f"- Best test macro-F1: **{best['test']:.4f}** ({best['label']}); issue target 0.802 (TimeLMs-2021): "
        f"**{reached}**.",
        "- Did the honest CV rank the rows like test? "
        + same_order([r["honest"] for r in rows.values()], [r["test"] for r in rows.values()])
        + ".",
    ]
    write_section("transfer", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; use one of {', '.join(VARIANTS)}")
    if not args.report_only:
        if dataset(TARGET) is None or dataset(SOURCE) is None:
            print(f"skipping: ../shared/data/{TARGET} or {SOURCE} not found")
            return
        run(variants)
    report(load_results(RESULTS))


if __name__ == "__main__":
    main()
