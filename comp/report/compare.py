"""`comp compare RUN RUN ...`: runs side by side in ``reports/compare-<runs>/``: their CV in one
metric, per-class tuned F1 and the correlation of their OOF probabilities."""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from comp.atomic import write_csv, write_text
from comp.errors import CompError, DataError, RunError
from comp.evaluation import ESTIMATES, direction, score_entry
from comp.report.page import image_html, page_html, table_html
from comp.report.run import check_out_folder
from comp.report.tables import class_table, thresholds_from_json

if TYPE_CHECKING:
    from comp.workspace import Workspace


def oof_correlation(oofs: dict[str, np.ndarray], method: str = "pearson") -> pd.DataFrame:
    """Correlation between runs' OOF probabilities: per class (one column of each run), then the
    mean over classes, so the gap between common and rare classes does not inflate it.
    ``oofs`` maps run name -> ``(n_samples, n_outputs)``; ``method`` pearson or spearman. A class
    that is constant in a run is left out of that pair's mean."""

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
            raise DataError(f"run '{name}' has other classes than '{names[0]}'; compare runs of one competition")
        frame[name] = tables[name]["f1_tuned"].to_numpy()
    frame["best"] = [names[i] for i in np.argmax(frame[names].to_numpy(), axis=1)]
    return frame


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
        if r.record.cv_optimistic:
            notes.append(f"run '{r.name}' has an optimistic CV ({r.record.cv_optimistic_reason})")
        if entry is None:
            notes.append(
                f"run '{r.name}' has no {metric} score (it is scored with {r.scores.get('metric', 'nothing')}): "
                f"its CV is left out; add it with `comp thresholds {r.name} --metric {metric}`"
            )
        cv = (entry or {}).get("cv", {})
        rows.append(
            {
                "run": r.name,
                "model": r.record.model,
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
