"""Reports on runs: tables as data, figures (comp.plots) and one self-contained HTML page.

`comp report RUN` writes ``runs/<run>/report/``: ``report.html`` (figures embedded as base64, so the
one file can be shared), the PNGs and ``per_class.csv`` / ``folds.csv``. `comp compare RUN RUN ...`
writes ``reports/compare-<runs>/``. The table functions are pure (arrays in, DataFrames out) and
use comp.metrics and comp.thresholds, so a report's numbers are the ones `train` and `thresholds`
compute. Arrays are ``(n_samples, n_outputs)`` as everywhere in comp (binary: one positive column).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from comp.atomic import write_csv, write_text
from comp.errors import CompError, DataError, RunError
from comp.evaluation import ESTIMATES, direction, greater_is_better, score_entry
from comp.metrics import check_labels, check_proba, expand_binary, per_class
from comp.thresholds import apply_thresholds

if TYPE_CHECKING:
    import pandas as pd

    from comp.workspace import Workspace

N_WEAKEST = 5  # classes that get a precision-recall panel


# ---- pure tables -------------------------------------------------------------------------------


def default_thresholds(task: str, n_outputs: int) -> np.ndarray:
    """The untuned decision: 0.5 per class, multiclass plain argmax (zero offsets)."""
    return np.zeros(n_outputs) if task == "multiclass" else np.full(n_outputs, 0.5)


def default_label(task: str) -> str:
    return "argmax" if task == "multiclass" else "at 0.5"


def thresholds_from_json(
    record: dict[str, Any] | None, classes: Sequence[str]
) -> tuple[np.ndarray | None, int | None]:
    """thresholds.json's values in ``classes`` order and its ``min_labels``. The thresholds are None
    when there is no file or they are NaN (a probability metric has nothing to tune)."""
    if not record:
        return None, None
    from comp.evaluation import threshold_values

    t = threshold_values(record, list(classes))
    min_labels = int(record.get("min_labels") or 0)
    return (None if np.isnan(t).any() else t), min_labels


def class_table(
    Y, P, classes: Sequence[str], task: str, thresholds=None, min_labels: int = 0
) -> pd.DataFrame:
    """One row per output column: ``support``, ``prevalence``, the tuned ``threshold`` (multiclass:
    the additive offset), and ``predicted`` count, ``precision``, ``recall``, ``f1`` both at the
    default decision (suffix ``_0.5``; multiclass: argmax) and at the thresholds (suffix ``_tuned``).

    ``Y`` 0/1 and ``P`` probabilities, both ``(n_samples, n_outputs)``; ``thresholds``
    ``(n_outputs,)`` or None for the default decision. ``min_labels`` applies to both decisions,
    as in the run's scores.json.
    """
    import pandas as pd

    Y = check_labels(Y, task, "Y")
    P = check_proba(P, Y.shape, task)
    if len(classes) != Y.shape[1]:
        raise DataError(
            f"{len(classes)} class names for {Y.shape[1]} label columns; give one name per column"
        )
    default = default_thresholds(task, Y.shape[1])
    tuned = default if thresholds is None else np.asarray(thresholds, dtype=float)
    at_default = per_class(Y, apply_thresholds(P, default, task, min_labels))
    at_tuned = per_class(Y, apply_thresholds(P, tuned, task, min_labels))
    frame = pd.DataFrame(
        {
            "class": [str(c) for c in classes],
            "support": at_default["support"],
            "prevalence": at_default["support"] / Y.shape[0],
            "threshold": tuned,
        }
    )
    for suffix, stats in (("0.5", at_default), ("tuned", at_tuned)):
        frame[f"predicted_{suffix}"] = stats["n_predicted"]
        for name in ("precision", "recall", "f1"):
            frame[f"{name}_{suffix}"] = stats[name]
    return frame


def fold_table(per_fold: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """scores.json's ``per_fold`` list as a frame: fold, rows, at_0.5, tuned, honest, seconds."""
    import pandas as pd

    columns = ["fold", "rows", *ESTIMATES, "seconds"]
    return pd.DataFrame([{c: row.get(c) for c in columns} for row in per_fold], columns=columns)


def fold_spread(folds: pd.DataFrame) -> pd.DataFrame:
    """Per estimate (at_0.5, tuned, honest): mean, std (ddof=1), min, max and max - min over folds."""
    import pandas as pd

    rows = []
    for name in ESTIMATES:
        v = pd.to_numeric(folds[name], errors="coerce").dropna().to_numpy(dtype=float)
        if v.size == 0:
            continue
        rows.append(
            {
                "estimate": name,
                "mean": v.mean(),
                "std": v.std(ddof=1) if v.size > 1 else math.nan,
                "min": v.min(),
                "max": v.max(),
                "range": v.max() - v.min(),
            }
        )
    return pd.DataFrame(rows, columns=["estimate", "mean", "std", "min", "max", "range"])


def prevalence_table(Y, oof_labels, test_labels, classes: Sequence[str]) -> pd.DataFrame:
    """Share of rows with each class: true in train, predicted on the OOF and predicted on test.
    All inputs 0/1 ``(n_rows, n_outputs)``; a test share far from the OOF share means the test set
    (or the model's behaviour on it) differs from the training data."""
    import pandas as pd

    return pd.DataFrame(
        {
            "class": [str(c) for c in classes],
            "train": np.asarray(Y, dtype=bool).mean(axis=0),
            "oof_predicted": np.asarray(oof_labels, dtype=bool).mean(axis=0),
            "test_predicted": np.asarray(test_labels, dtype=bool).mean(axis=0),
        }
    )


def confusion_table(Y, labels, names: Sequence[str], task: str) -> pd.DataFrame:
    """Counts ``(n_classes, n_classes)``, rows the true class and columns the predicted one, for a
    single-label task (multiclass one-hot; binary one column, expanded to [negative, positive])."""
    import pandas as pd

    if task == "multilabel":
        raise DataError(
            "a confusion matrix needs one label per row; multilabel tasks have per-class tables instead"
        )
    Y = check_labels(Y, task, "Y")
    pred = check_labels(labels, task, "predicted labels")
    if task == "binary":
        Y, pred = expand_binary(Y), expand_binary(pred)
    if len(names) != Y.shape[1]:
        raise DataError(f"{len(names)} class names for {Y.shape[1]} classes; give one name per class")
    n = Y.shape[1]
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (Y.argmax(axis=1), pred.argmax(axis=1)), 1)
    names = [str(c) for c in names]
    return pd.DataFrame(counts, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted"))


def pr_curve(y, p) -> dict[str, np.ndarray | float]:
    """Precision and recall of ``p >= t`` for every distinct score ``t`` (high to low), and average
    precision ``sum((R_k - R_{k-1}) * P_k)`` (scikit-learn's definition). ``y`` 0/1 and ``p``
    ``(n_samples,)``; needs at least one positive."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise DataError("a precision-recall curve needs at least one positive row")
    order = np.argsort(-p, kind="stable")
    p, y = p[order], y[order]
    last = np.r_[np.flatnonzero(p[1:] != p[:-1]), p.size - 1]  # last row of each distinct score
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return {"precision": precision, "recall": recall, "thresholds": p[last], "ap": ap}


def weakest_classes(table: pd.DataFrame, k: int = N_WEAKEST) -> list[int]:
    """Row positions of the ``k`` classes with the lowest tuned F1 (ties: fewer positives first),
    among classes with at least one positive (others have no curve)."""
    frame = table.reset_index(drop=True)
    frame = frame[frame["support"] > 0]
    return frame.sort_values(["f1_tuned", "support"], kind="stable").index[:k].tolist()


def oof_correlation(oofs: dict[str, np.ndarray], method: str = "pearson") -> pd.DataFrame:
    """Correlation between runs' OOF probabilities: per class (one column of each run), then the
    mean over classes, so the gap between common and rare classes does not inflate it.
    ``oofs`` maps run name -> ``(n_samples, n_outputs)``; ``method`` pearson or spearman. A class
    that is constant in a run is left out of that pair's mean."""
    import pandas as pd

    if method not in ("pearson", "spearman"):
        raise CompError(f"unknown correlation method '{method}'; choose pearson or spearman")
    names = list(oofs)
    shapes = {np.shape(oofs[n]) for n in names}
    if len(shapes) != 1:
        raise DataError(f"OOF arrays have different shapes {sorted(shapes)}; compare runs of one competition")
    n_outputs = np.shape(oofs[names[0]])[1]
    per_class_corr = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for c in range(n_outputs):
            frame = pd.DataFrame({n: np.asarray(oofs[n], dtype=float)[:, c] for n in names})
            per_class_corr.append(frame.corr(method=method).to_numpy())
    stacked = np.array(per_class_corr)
    valid = np.isfinite(stacked)
    mean = np.divide(
        np.where(valid, stacked, 0).sum(axis=0),
        valid.sum(axis=0),
        out=np.full(stacked.shape[1:], math.nan),
        where=valid.sum(axis=0) > 0,
    )
    np.fill_diagonal(mean, 1.0)
    return pd.DataFrame(mean, index=names, columns=names)


def compare_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per-class tuned F1 of several runs side by side: class, support, one column per run and
    ``best`` (the run with the highest F1; the first on ties). ``tables`` from :func:`class_table`."""
    names = list(tables)
    first = tables[names[0]]
    frame = first[["class", "support"]].copy()
    for name in names:
        if tables[name]["class"].tolist() != first["class"].tolist():
            raise DataError(
                f"run '{name}' has other classes than '{names[0]}'; compare runs of one competition"
            )
        frame[name] = tables[name]["f1_tuned"].to_numpy()
    frame["best"] = [names[i] for i in np.argmax(frame[names].to_numpy(), axis=1)]
    return frame


@dataclass
class RunTables:
    per_class: pd.DataFrame
    folds: pd.DataFrame
    spread: pd.DataFrame
    prevalence: pd.DataFrame
    confusion: pd.DataFrame | None  # single-label tasks only
    pr: list[dict[str, Any]]  # precision-recall panels of the weakest classes


def run_tables(
    Y,
    oof,
    test,
    classes: Sequence[str],
    task: str,
    thresholds=None,
    min_labels: int = 0,
    per_fold: Sequence[dict[str, Any]] = (),
    label_names: Sequence[str] | None = None,
) -> RunTables:
    """Every table of a run report. ``Y``, ``oof`` ``(n_train, n_outputs)``, ``test``
    ``(n_test, n_outputs)``; ``label_names``: the confusion matrix's class names (binary: both)."""
    table = class_table(Y, oof, classes, task, thresholds, min_labels)
    used = default_thresholds(task, len(classes)) if thresholds is None else np.asarray(thresholds, float)
    oof_labels = apply_thresholds(oof, used, task, min_labels)
    test_labels = apply_thresholds(np.asarray(test, dtype=float), used, task, min_labels)
    folds = fold_table(per_fold)
    confusion = None
    if task != "multilabel":
        confusion = confusion_table(Y, oof_labels, label_names or classes, task)
    Yb, P = np.asarray(Y, dtype=bool), np.asarray(oof, dtype=float)
    tuned_is_default = np.array_equal(used, default_thresholds(task, len(classes)))
    panels = []
    for j in weakest_classes(table):
        row = table.iloc[j]
        curve = pr_curve(Yb[:, j], P[:, j])
        if tuned_is_default:
            points = {default_label(task): (row["recall_0.5"], row["precision_0.5"])}
        else:
            points = {
                default_label(task): (row["recall_0.5"], row["precision_0.5"]),
                "tuned": (row["recall_tuned"], row["precision_tuned"]),
            }
        panels.append(
            {
                "name": f"{row['class']} (F1 {row['f1_tuned']:.2f}, n={int(row['support'])})",
                "precision": curve["precision"],
                "recall": curve["recall"],
                "ap": curve["ap"],
                "prevalence": float(row["prevalence"]),
                "points": points,
            }
        )
    return RunTables(
        table,
        folds,
        fold_spread(folds),
        prevalence_table(Y, oof_labels, test_labels, classes),
        confusion,
        panels,
    )


# ---- figures -----------------------------------------------------------------------------------


def run_figures(tables: RunTables, task: str, out: Path, run: str) -> dict[str, Path]:
    """Write the run report's PNGs into ``out``; returns name -> path."""
    from comp import plots

    t = tables.per_class
    classes = t["class"].tolist()
    figures = {
        "f1": plots.f1_bars(
            classes,
            t["support"],
            t["f1_0.5"],
            t["f1_tuned"],
            out / "f1.png",
            default_label(task),
            f"{run}: per-class F1 on the OOF",
        ),
        "prevalence": plots.prevalence_bars(
            classes,
            {
                "train (true)": tables.prevalence["train"],
                "OOF (predicted)": tables.prevalence["oof_predicted"],
                "test (predicted)": tables.prevalence["test_predicted"],
            },
            out / "prevalence.png",
            f"{run}: label prevalence, tuned decisions",
        ),
    }
    if tables.confusion is not None:
        figures["confusion"] = plots.confusion_heatmap(
            tables.confusion.to_numpy(),
            tables.confusion.index.tolist(),
            out / "confusion.png",
            f"{run}: OOF confusion matrix (tuned)",
        )
    if tables.pr:
        figures["pr"] = plots.pr_curves(
            tables.pr,
            out / "pr_weakest.png",
            f"{run}: precision-recall of the {len(tables.pr)} weakest classes (OOF)",
        )
    return figures


# ---- HTML --------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { padding: 3px 9px; text-align: right; border-bottom: 1px solid #eee; }
th { background: #f4f6f8; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.meta { color: #555; } .note { color: #8a5a00; }
"""


def table_html(
    frame: pd.DataFrame,
    percent: Iterable[str] = (),
    digits: int = 4,
    index: bool = False,
    decimals: dict[str, int] | None = None,
) -> str:
    """A frame as an HTML table: floats with ``digits`` decimals (per column: ``decimals``),
    ``percent`` columns as percentages."""

    def fixed(d: int):
        return lambda v: "-" if v is None or v != v else f"{v:.{d}f}"

    formatters = {c: fixed(d) for c, d in (decimals or {}).items() if c in frame.columns}
    formatters.update(
        {c: (lambda v: "-" if v is None or v != v else f"{v:.2%}") for c in percent if c in frame.columns}
    )
    return frame.to_html(
        index=index,
        border=0,
        na_rep="-",
        formatters=formatters,
        float_format=lambda v: f"{v:.{digits}f}",
        escape=True,
    )


def image_html(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def page_html(title: str, sections: Sequence[tuple[str | None, str]], meta: str = "") -> str:
    """One self-contained page: each section a (heading, HTML) pair."""
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if meta:
        parts.append(f'<p class="meta">{html.escape(meta)}</p>')
    for heading, body in sections:
        if heading:
            parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(body)
    parts.append(f'<p class="meta">written by comp on {time.strftime("%Y-%m-%d %H:%M")}</p></body></html>\n')
    return "\n".join(parts)


# ---- comp report RUN ---------------------------------------------------------------------------


@dataclass
class RunReport:
    run: str
    task: str
    metric: str
    cv: dict[str, float]
    tables: RunTables
    dir: Path
    html: Path
    figures: dict[str, Path]
    notes: list[str] = field(default_factory=list)


def check_out_folder(out: str | Path | None) -> None:
    """``--out`` must be a folder (it gets report.html and the figures), never an existing file."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise CompError(f"--out {out} is a file; pass a folder (the report writes report.html and its figures into it)")


def write_run_report(ws: Workspace, name: str, out: str | Path | None = None) -> RunReport:
    """Tables, figures and report.html for run ``name`` in ``out`` (default runs/<run>/report/)."""
    from comp.runs import labels_for, load_run

    check_out_folder(out)
    settings = ws.load_settings()
    run = load_run(ws, name, settings.output_names)
    comp = labels_for(ws, run)
    task = settings.task
    thresholds, min_labels = thresholds_from_json(run.thresholds, run.classes)
    notes = []
    if thresholds is None:
        notes.append(
            "the run has no tuned thresholds (no thresholds.json, or a probability metric): "
            "the tuned columns repeat the default decision"
        )
    if run.record.get("cv_optimistic") or run.scores.get("cv_optimistic"):
        why = run.record.get("cv_optimistic_reason") or run.scores.get("cv_optimistic_reason") or "marked cv_optimistic"
        notes.append(f"cv optimistic: {why}; its CV (honest included) overstates what test will give, so do not "
                     "rank it against other runs by CV")
    min_labels = settings.min_labels if min_labels is None else min_labels
    label_names = [str(c) for c in settings.classes] if task == "binary" else run.classes
    tables = run_tables(
        comp.Y,
        run.oof,
        run.test,
        run.classes,
        task,
        thresholds,
        min_labels,
        run.scores.get("per_fold", []),
        label_names,
    )
    out = Path(out) if out is not None else ws.run(name).report_dir
    figures = run_figures(tables, task, out, name)
    write_csv(out / "per_class.csv", tables.per_class)
    write_csv(out / "folds.csv", tables.folds)
    metric = run.scores.get("metric", settings.metric)
    cv = run.scores.get("cv", {})
    report = RunReport(name, task, metric, cv, tables, out, out / "report.html", figures, notes)
    write_text(report.html, _run_html(report, run, len(comp.Y), len(run.test_ids)))
    return report


def _run_html(report: RunReport, run, n_train: int, n_test: int) -> str:
    import pandas as pd

    t = report.tables
    record = run.record
    folds = record.get("folds", {})
    model = record.get("model", "?")
    what = model if record.get("kind") == "ensemble" else f"model {model}"  # ensembles: "ensemble(mean)"
    meta = (
        f"{what} · task {report.task} · metric {report.metric} · "
        f"{folds.get('n_folds', '?')} folds ({folds.get('file', '?')}) · train {n_train} rows, test {n_test} rows"
    )
    cv = report.cv
    lower = greater_is_better(report.metric) is False
    optimism = None
    if cv.get("tuned") is not None and cv.get("honest") is not None:
        optimism = (cv["honest"] - cv["tuned"]) if lower else (cv["tuned"] - cv["honest"])
    summary = pd.DataFrame(
        {
            "estimate": [
                "at 0.5" if report.task != "multiclass" else "argmax",
                "tuned",
                "honest",
                "honest - tuned" if lower else "tuned - honest",
            ],
            f"{report.metric} ({direction(report.metric)})": [
                cv.get("at_0.5"),
                cv.get("tuned"),
                cv.get("honest"),
                optimism,
            ],
        }
    )
    others = run.scores.get("other_metrics") or {}
    other_html = ""
    if others:
        other = pd.DataFrame(
            [
                {"metric": f"{m} ({direction(m)})", **{e: (o.get("cv") or {}).get(e) for e in ESTIMATES}}
                for m, o in others.items()
            ]
        )
        other_html = (
            "<p class=\"meta\">Probability metrics, scored on the same OOF probabilities "
            "(they have no thresholds of their own):</p>" + table_html(other)
        )
    default = default_label(report.task)
    sections: list[tuple[str | None, str]] = [
        (
            "Cross-validation",
            table_html(summary) + '<p class="meta">honest: everything fitted on the OOF (thresholds, blend '
            "weights, a stack's meta-model) fitted on the other folds and applied to each held-out fold; the last "
            "row is how much fitting on the OOF flatters the CV.</p>" + other_html,
        ),
        (
            f"Per fold ({report.metric}, {direction(report.metric)})",
            table_html(t.folds, decimals={"seconds": 1}) + table_html(t.spread),
        ),
        ("Per-class F1", image_html(report.figures["f1"], "per-class F1")),
        ("Label prevalence", image_html(report.figures["prevalence"], "label prevalence")),
    ]
    if "confusion" in report.figures:
        sections.append(("Confusion matrix", image_html(report.figures["confusion"], "confusion matrix")))
    if "pr" in report.figures:
        sections.append(("Weakest classes", image_html(report.figures["pr"], "precision-recall curves")))
    threshold_note = (
        "threshold: the additive offset on the probability before argmax"
        if report.task == "multiclass"
        else "threshold: predict the class when p >= threshold"
    )
    sections.append(
        (
            "Per class",
            f'<p class="meta">_0.5 columns: {html.escape(default)}; _tuned columns: '
            f"thresholds.json. {html.escape(threshold_note)}.</p>"
            + table_html(t.per_class, percent=["prevalence"]),
        )
    )
    if t.confusion is not None:
        sections.append(
            ("Confusion counts (rows true, columns predicted)", table_html(t.confusion, index=True))
        )
    if report.notes:
        sections.append(("Notes", "".join(f'<p class="note">{html.escape(n)}</p>' for n in report.notes)))
    return page_html(f"Run {report.run}", sections, meta)


# ---- comp compare RUN RUN ... ------------------------------------------------------------------


@dataclass
class Comparison:
    runs: list[str]
    metric: str
    scores: pd.DataFrame  # run, model, at_0.5, tuned, honest, all in `metric` (None where a run has none)
    f1: pd.DataFrame  # compare_table
    correlation: pd.DataFrame
    dir: Path
    html: Path
    figures: dict[str, Path]
    notes: list[str] = field(default_factory=list)


def compare_dir(ws: Workspace, names: Sequence[str]) -> Path:
    from comp.workspace import file_safe

    names = [file_safe(n) for n in names]  # a trial's study/trial-3
    label = "-vs-".join(names)
    if len(label) > 80:  # keep the folder name short; the hash keeps different sets apart
        label = f"{'-vs-'.join(names[:2])}-and-{len(names) - 2}-more-{hashlib.sha1(label.encode()).hexdigest()[:8]}"
    return ws.reports_dir / f"compare-{label}"


def write_comparison(
    ws: Workspace,
    names: Sequence[str],
    out: str | Path | None = None,
    method: str = "pearson",
    metric: str | None = None,
) -> Comparison:
    """Per-class tuned F1 side by side, the CV of runs ``names`` in one ``metric`` (default:
    comp.yaml's; a run without a score in it gets none, and a note) and their OOF correlation, as
    tables, PNGs and compare.html in ``out`` (default reports/compare-<runs>/)."""
    import pandas as pd

    from comp import plots
    from comp.runs import labels_for, load_run

    check_out_folder(out)
    names = list(dict.fromkeys(names))
    if len(names) < 2:
        raise RunError("compare needs at least two different runs: `comp compare RUN RUN ...`")
    if method not in ("pearson", "spearman"):
        raise CompError(f"unknown correlation method '{method}'; choose pearson or spearman")
    settings = ws.load_settings()
    runs = [load_run(ws, n, settings.output_names) for n in names]
    comp = labels_for(ws, runs[0])
    for run in runs[1:]:
        labels_for(ws, run)
    tables = {}
    for run in runs:
        thresholds, min_labels = thresholds_from_json(run.thresholds, run.classes)
        min_labels = settings.min_labels if min_labels is None else min_labels
        tables[run.name] = class_table(comp.Y, run.oof, run.classes, settings.task, thresholds, min_labels)
    f1 = compare_table(tables)
    corr = oof_correlation({r.name: r.oof for r in runs}, method)
    from comp.metrics import get_metric

    metric = get_metric(metric or settings.metric).name
    rows, notes = [], []
    for r in runs:
        entry = score_entry(r.scores, metric)
        if r.record.get("cv_optimistic"):
            notes.append(f"run '{r.name}' has an optimistic CV ({r.record.get('cv_optimistic_reason')})")
        if entry is None:
            notes.append(
                f"run '{r.name}' has no {metric} score (it is scored with {r.scores.get('metric', 'nothing')}): "
                f"its CV is left out; add it with `comp thresholds {r.name} --metric {metric}`"
            )
        cv = (entry or {}).get("cv", {})
        rows.append(
            {
                "run": r.name,
                "model": r.record.get("model", r.record.get("kind", "?")),
                **{e: cv.get(e) for e in ESTIMATES},
            }
        )
    scores = pd.DataFrame(rows)
    out = Path(out) if out is not None else compare_dir(ws, names)
    figures = {
        "f1": plots.f1_heatmap(
            f1["class"].tolist(),
            names,
            f1[names].to_numpy(),
            out / "compare_f1.png",
            "per-class F1 (tuned thresholds, OOF)",
        ),
        "correlation": plots.correlation_heatmap(
            corr.to_numpy(), names, out / "correlation.png", f"OOF correlation ({method}, mean over classes)"
        ),
    }
    write_csv(out / "compare_f1.csv", f1)
    write_csv(out / "correlation.csv", corr.reset_index(names="run"))
    result = Comparison(names, metric, scores, f1, corr, out, out / "compare.html", figures, notes)
    sections = [
        (
            f"Cross-validation ({metric}, {direction(metric)})",
            table_html(scores) + "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes),
        ),
        (
            "OOF correlation",
            image_html(figures["correlation"], "OOF correlation")
            + '<p class="meta">Mean over classes of the correlation of the runs\' OOF probabilities. '
            "Runs that err differently (low correlation) gain most from blending.</p>"
            + table_html(corr, digits=3, index=True),
        ),
        ("Per-class F1 (tuned)", image_html(figures["f1"], "per-class F1") + table_html(f1)),
    ]
    write_text(result.html, page_html(f"Compare {', '.join(names)}", sections, f"task {settings.task}"))
    return result


# ---- comp lb --plot ----------------------------------------------------------------------------


def lb_points(rows: Iterable[Any]) -> tuple[list[str], list[float], list[float]]:
    """(names, cv, public) of the submissions with both scores. A row is a ``(run, cv, public)``
    tuple or an object with ``run``, ``cv`` and ``public_score`` (a ledger entry)."""
    names, cv, lb = [], [], []
    for row in rows:
        run, c, p = (row.run, row.cv, row.public_score) if hasattr(row, "public_score") else tuple(row)
        if (
            c is None
            or p is None
            or (isinstance(c, float) and math.isnan(c))
            or (isinstance(p, float) and math.isnan(p))
        ):
            continue
        names.append(str(run))
        cv.append(float(c))
        lb.append(float(p))
    return names, cv, lb


def lb_plot(rows: Iterable[Any], out_path: str | Path) -> Path:
    """Scatter of honest CV against public LB for every scored submission, with y = x; see
    :func:`lb_points` for ``rows``."""
    from comp import plots

    names, cv, lb = lb_points(rows)
    if not names:
        raise CompError(
            "no submission has both a CV and a public score yet; `comp lb` refreshes the scores from Kaggle"
        )
    return plots.lb_scatter(names, cv, lb, out_path, f"CV (honest) vs public LB, {len(names)} submission(s)")
