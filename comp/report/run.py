"""`comp report RUN`: a run's tables, figures and report.html in ``runs/<run>/report/``.

``report.html`` embeds its figures as base64, so the one file can be shared; the PNGs and
``per_class.csv`` / ``folds.csv`` are written next to it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from comp.atomic import write_csv, write_text
from comp.decision import default_label
from comp.errors import CompError
from comp.evaluation import ESTIMATES, direction, greater_is_better
from comp.report.page import image_html, page_html, table_html
from comp.report.tables import RunTables, run_tables, thresholds_from_json

if TYPE_CHECKING:
    from comp.workspace import Workspace


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
    if run.record.cv_optimistic or run.scores.get("cv_optimistic"):
        why = run.record.cv_optimistic_reason or run.scores.get("cv_optimistic_reason") or "marked cv_optimistic"
        notes.append(
            f"cv optimistic: {why}; its CV (honest included) overstates what test will give, so do not "
            "rank it against other runs by CV"
        )
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


def per_class_caption(task: str) -> str:
    """What the per-class table's column suffixes mean, as the sentence under the table."""
    return (
        f"Columns ending in _0.5 score the untuned decision ({default_label(task)}); columns ending in "
        "_tuned score the thresholds in thresholds.json."
    )


def _run_html(report: RunReport, run, n_train: int, n_test: int) -> str:

    t = report.tables
    record = run.record
    folds = record.folds
    what = record.model if record.is_ensemble else f"model {record.model}"  # ensembles: "ensemble(mean)"
    meta = (
        f"{what} · task {report.task} · metric {report.metric} · "
        f"{folds.n_folds} folds ({folds.file}) · train {n_train} rows, test {n_test} rows"
    )
    cv = report.cv
    lower = greater_is_better(report.metric) is False
    optimism = None
    if cv.get("tuned") is not None and cv.get("honest") is not None:
        optimism = (cv["honest"] - cv["tuned"]) if lower else (cv["tuned"] - cv["honest"])
    summary = pd.DataFrame(
        {
            "estimate": [
                default_label(report.task),
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
            '<p class="meta">Probability metrics, scored on the same OOF probabilities '
            "(they have no thresholds of their own):</p>" + table_html(other)
        )
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
        "Threshold: the additive offset on the probability before argmax"
        if report.task == "multiclass"
        else "Threshold: predict the class when p >= threshold"
    )
    sections.append(
        (
            "Per class",
            f'<p class="meta">{html.escape(per_class_caption(report.task))} {html.escape(threshold_note)}.</p>'
            + table_html(t.per_class, percent=["prevalence"]),
        )
    )
    if t.confusion is not None:
        sections.append(("Confusion counts (rows true, columns predicted)", table_html(t.confusion, index=True)))
    if report.notes:
        sections.append(("Notes", "".join(f'<p class="note">{html.escape(n)}</p>' for n in report.notes)))
    return page_html(f"Run {report.run}", sections, meta)
