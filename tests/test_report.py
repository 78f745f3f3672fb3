"""Reports: tables hold the numbers comp.metrics computes, figures are PNGs of the promised size,
report.html is self-contained, and train.log records a run."""

import base64
import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from comp import plots
from comp.errors import CompError, DataError, RunError
from comp.metrics import per_class, score
from comp.report import (
    class_table,
    compare_table,
    confusion_table,
    fold_spread,
    fold_table,
    lb_plot,
    lb_points,
    oof_correlation,
    pr_curve,
    run_figures,
    run_tables,
    thresholds_from_json,
    weakest_classes,
    write_comparison,
    write_run_report,
)
from comp.runs import load_run
from comp.thresholds import apply_thresholds
from comp.train import train
from tests.helpers import make_workspace

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, size):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size


@pytest.fixture(scope="module")
def ml(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("report-ml"))
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\nword_ngrams: [1, 2]\n")
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=3)
    return ws


@pytest.fixture(scope="module")
def mc(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("report-mc"), kind="multiclass")
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    return ws


# ---- pure tables ---------------------------------------------------------------------------------


def _multilabel(seed=0, n=200, c=4):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, c)) < [0.1, 0.3, 0.5, 0.2]).astype(np.uint8)
    P = np.clip(Y * 0.4 + rng.random((n, c)) * 0.6, 0, 1)
    return Y, P


def test_class_table_holds_the_metrics_numbers():
    Y, P = _multilabel()
    t = np.array([0.3, 0.45, 0.6, 0.52])
    table = class_table(Y, P, list("abcd"), "multilabel", t)
    tuned = per_class(Y, apply_thresholds(P, t, "multilabel"))
    half = per_class(Y, P >= 0.5)
    for name in ("precision", "recall", "f1"):
        np.testing.assert_array_equal(table[f"{name}_tuned"], tuned[name])
        np.testing.assert_array_equal(table[f"{name}_0.5"], half[name])
    np.testing.assert_array_equal(table["predicted_tuned"], tuned["n_predicted"])
    np.testing.assert_array_equal(table["support"], Y.sum(axis=0))
    np.testing.assert_allclose(table["prevalence"], Y.mean(axis=0))
    np.testing.assert_array_equal(table["threshold"], t)
    assert table["f1_tuned"].mean() == pytest.approx(score("f1_macro", Y, P >= t, "multilabel"))
    assert table["f1_tuned"].tolist() != table["f1_0.5"].tolist()


def test_class_table_gives_what_comp_thresholds_prints_golden_values():
    # class a: positives at p 0.9, 0.6; negatives at 0.55, 0.2. At 0.5: tp 2, fp 1 -> F1 4/5;
    # tuned at 0.58: tp 2, fp 0 -> F1 1. Class b: one positive at 0.4 -> F1 0 at 0.5, 2/3 at 0.3
    # (tp 1, fp 1, fn 0).
    Y = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    P = np.array([[0.9, 0.1], [0.6, 0.2], [0.55, 0.4], [0.2, 0.35]])
    table = class_table(Y, P, ["a", "b"], "multilabel", [0.58, 0.3])
    shown = table[["class", "support", "threshold", "f1_0.5", "f1_tuned"]]
    assert shown["class"].tolist() == ["a", "b"] and shown["support"].tolist() == [2, 1]
    np.testing.assert_allclose(shown["threshold"], [0.58, 0.3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(shown["f1_0.5"], [0.8, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(shown["f1_tuned"], [1.0, 2 / 3], rtol=0, atol=1e-15)
    np.testing.assert_allclose(table["precision_0.5"], [2 / 3, 0.0], rtol=0, atol=1e-15)
    assert table["predicted_tuned"].tolist() == [2, 2]


def test_class_table_min_labels_and_default():
    Y, P = _multilabel(1)
    table = class_table(Y, P * 0.5, list("abcd"), "multilabel", None, min_labels=1)
    labels = apply_thresholds(P * 0.5, np.full(4, 0.5), "multilabel", 1)
    assert labels.sum(axis=1).min() == 1
    np.testing.assert_array_equal(table["f1_tuned"], per_class(Y, labels)["f1"])
    np.testing.assert_array_equal(table["f1_tuned"], table["f1_0.5"])
    with pytest.raises(DataError, match="3 class names for 4 label columns; give one name per column"):
        class_table(Y, P, list("abc"), "multilabel")


def test_class_table_multiclass_uses_argmax_plus_offsets():
    rng = np.random.default_rng(2)
    y = rng.choice(3, 150, p=[0.5, 0.3, 0.2])
    Y = np.eye(3, dtype=np.uint8)[y]
    P = rng.dirichlet(np.ones(3), 150) * 0.6 + Y * 0.4
    offsets = np.array([0.0, 0.05, 0.2])
    table = class_table(Y, P, ["neg", "neu", "pos"], "multiclass", offsets)
    pred = np.eye(3, dtype=np.uint8)[np.argmax(P + offsets, axis=1)]
    argmax = np.eye(3, dtype=np.uint8)[np.argmax(P, axis=1)]
    np.testing.assert_array_equal(table["f1_tuned"], per_class(Y, pred)["f1"])
    np.testing.assert_array_equal(table["f1_0.5"], per_class(Y, argmax)["f1"])
    assert table["predicted_tuned"].sum() == 150
    assert table["f1_tuned"].mean() == pytest.approx(score("f1_macro", Y, pred, "multiclass"))


def test_fold_table_and_spread():
    per_fold = [
        {"fold": k, "rows": 10, "at_0.5": a, "tuned": a + 0.1, "honest": a + 0.05, "seconds": 1.0}
        for k, a in enumerate([0.5, 0.6, 0.7])
    ]
    folds = fold_table(per_fold)
    assert folds.columns.tolist() == ["fold", "rows", "at_0.5", "tuned", "honest", "seconds"]
    spread = fold_spread(folds).set_index("estimate")
    assert spread.loc["at_0.5", "mean"] == pytest.approx(0.6)
    assert spread.loc["tuned", "std"] == pytest.approx(np.std([0.6, 0.7, 0.8], ddof=1))
    assert spread.loc["honest", "range"] == pytest.approx(0.2)
    assert spread.loc["honest", "min"] == pytest.approx(0.55)


def test_confusion_table():
    Y = np.eye(3, dtype=np.uint8)[[0, 0, 1, 2, 2, 2]]
    pred = np.eye(3, dtype=np.uint8)[[0, 1, 1, 2, 0, 2]]
    table = confusion_table(Y, pred, ["a", "b", "c"], "multiclass")
    assert table.to_numpy().tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert table.loc["c", "a"] == 1  # a true 'c' predicted as 'a'
    binary = confusion_table(np.array([[1], [0], [1]]), np.array([[1], [1], [0]]), ["no", "yes"], "binary")
    assert binary.to_numpy().tolist() == [[0, 1], [1, 1]]
    with pytest.raises(DataError, match="a confusion matrix needs one label per row"):
        confusion_table(Y, pred, ["a", "b", "c"], "multilabel")


def test_pr_curve_runs_from_the_highest_threshold_down():
    curve = pr_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    np.testing.assert_allclose(curve["thresholds"], [0.9, 0.8, 0.7, 0.1])
    np.testing.assert_allclose(curve["precision"], [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(curve["recall"], [1 / 2, 1 / 2, 1, 1])
    assert curve["ap"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # sum of (R_k - R_k-1) * P_k
    tied = pr_curve([1, 0, 1], [0.5, 0.5, 0.2])  # equal scores are one point
    np.testing.assert_allclose(tied["precision"], [1 / 2, 2 / 3])
    with pytest.raises(DataError, match="needs at least one positive row"):
        pr_curve(np.zeros(5), np.ones(5))


def test_weakest_classes_skip_classes_without_positives():
    table = pd.DataFrame(
        {
            "class": list("abcdefg"),
            "support": [5, 0, 9, 3, 3, 40, 7],
            "f1_tuned": [0.5, 0.0, 0.1, 0.2, 0.2, 0.9, 0.3],
        }
    )
    assert weakest_classes(table, 5) == [2, 3, 4, 6, 0]


def test_oof_correlation_is_the_mean_over_classes():
    rng = np.random.default_rng(4)
    a = rng.random((100, 3))
    b = a + rng.normal(0, 0.3, (100, 3))
    c = a.copy()
    c[:, 2] = 0.5  # constant class: left out of the pairs it takes part in
    corr = oof_correlation({"a": a, "b": b, "c": c})
    expected_ab = np.mean([np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(3)])
    expected_bc = np.mean([np.corrcoef(b[:, k], c[:, k])[0, 1] for k in range(2)])
    assert corr.loc["a", "b"] == pytest.approx(expected_ab)
    assert corr.loc["b", "c"] == pytest.approx(expected_bc)
    assert corr.loc["c", "a"] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    np.testing.assert_allclose(corr.to_numpy(), corr.to_numpy().T)
    flipped = oof_correlation({"a": a, "1-a": 1 - a}, "spearman")
    assert flipped.loc["a", "1-a"] == pytest.approx(-1.0)
    with pytest.raises(CompError, match="unknown correlation method 'kendal'"):
        oof_correlation({"a": a, "b": b}, "kendal")


def test_thresholds_from_json():
    record = {"task": "multilabel", "min_labels": 1, "thresholds": {"a": 0.3, "b": 0.7}}
    t, k = thresholds_from_json(record, ["a", "b"])
    assert t.tolist() == [0.3, 0.7] and k == 1
    assert thresholds_from_json({"thresholds": {"a": float("nan"), "b": 0.2}}, ["a", "b"])[0] is None
    assert thresholds_from_json(None, ["a"]) == (None, None)
    with pytest.raises(RunError, match="thresholds.json has no threshold for class"):
        thresholds_from_json(record, ["a", "c"])


# ---- run reports ---------------------------------------------------------------------------------


def test_run_report_multilabel(ml):
    report = write_run_report(ml, "tfidf")
    run = load_run(ml, "tfidf")
    n = len(run.classes)
    assert report.dir == ml.run("tfidf").dir / "report"
    assert set(report.figures) == {"f1", "prevalence", "pr"}  # no confusion matrix for multilabel
    assert_png(report.figures["f1"], plots.size_px("f1", n))
    assert plots.size_px("f1", 6) == (800, 310)
    assert_png(report.figures["prevalence"], plots.size_px("prevalence", n))
    assert_png(report.figures["pr"], plots.size_px("pr", m=5))
    # the per-class table reproduces the run's scores.json (f1_macro = mean of per-class F1)
    cv = json.loads(ml.run("tfidf").scores.read_text())["cv"]
    t = report.tables.per_class
    assert t["f1_tuned"].mean() == pytest.approx(cv["tuned"])
    assert t["f1_0.5"].mean() == pytest.approx(cv["at_0.5"])
    thresholds = json.loads(ml.run("tfidf").thresholds.read_text())["thresholds"]
    assert t["threshold"].tolist() == [thresholds[c] for c in run.classes]
    assert report.tables.folds["fold"].tolist() == [0, 1, 2]
    assert report.tables.spread.set_index("estimate").loc["honest", "mean"] == pytest.approx(
        np.mean([r["honest"] for r in run.scores["per_fold"]])
    )
    # prevalence: train truth, and predictions of the tuned thresholds on test
    test_share = apply_thresholds(run.test, t["threshold"].to_numpy(), "multilabel").mean(axis=0)
    np.testing.assert_allclose(report.tables.prevalence["test_predicted"], test_share)
    assert report.tables.prevalence["train"].tolist() == pytest.approx(t["prevalence"].tolist())
    assert len(report.tables.pr) == 5
    assert pd.read_csv(report.dir / "per_class.csv")["f1_tuned"].tolist() == pytest.approx(t["f1_tuned"].tolist())


def test_report_html_is_self_contained(ml):
    report = write_run_report(ml, "tfidf", ml.root / "shared-report")
    text = report.html.read_text()
    assert report.html == ml.root / "shared-report" / "report.html"
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert sorted(base64.b64decode(i) for i in images) == sorted(p.read_bytes() for p in report.figures.values())
    assert not re.search(r'(src|href)="(?!data:)', text)  # nothing loaded from elsewhere
    assert "<th>f1_tuned</th>" in text and "honest" in text


def test_report_html_tables_scroll_and_the_per_class_caption_reads(ml):
    text = write_run_report(ml, "tfidf", ml.root / "caption-report").html.read_text()
    style = text[text.index("<style>") : text.index("</style>")]
    assert ".table-scroll { max-width: 100%; overflow-x: auto; }" in style
    # every table sits in the scrolling box, so a 28-class table never runs past the page
    assert text.count("<table") == text.count('<div class="table-scroll"><table') > 0
    caption = re.search(
        r'<p class="meta">([^<]*)</p><div class="table-scroll"><table[^>]*>\s*<thead>\s*'
        r"<tr[^>]*>\s*<th>class</th>",
        text,
    ).group(1)
    assert caption == (
        "Columns ending in _0.5 score the untuned decision (at 0.5); columns ending in _tuned score the "
        "thresholds in thresholds.json. Threshold: predict the class when p &gt;= threshold."
    )


def test_a_blends_fold_seconds_show_as_a_dash(ml):
    from comp.ensemble import make_ensemble

    make_ensemble(ml, ["tfidf", "nbsvm"], "mean-blend", force=True)
    report = write_run_report(ml, "mean-blend")
    assert report.tables.folds["seconds"].isna().all()  # a blend trains nothing per fold
    text = report.html.read_text()
    assert "None" not in re.sub(r"base64,[A-Za-z0-9+/=]+", "", text)
    folds = text[text.index("<h2>Per fold") :]
    folds = folds[: folds.index("</table>")]
    cells = re.findall(r"<td>([^<]*)</td>", folds)
    assert len(cells) == 3 * 6 and cells[5::6] == ["-", "-", "-"]  # the seconds column
    trained = write_run_report(ml, "tfidf").html.read_text()
    seconds = re.findall(r"<td>([^<]*)</td>", trained[trained.index("<h2>Per fold") :])[5]
    assert re.fullmatch(r"\d+\.\d", seconds)  # a trained run's seconds, one decimal


def test_run_report_multiclass(mc):
    report = write_run_report(mc, "tfidf")
    t, confusion = report.tables.per_class, report.tables.confusion
    assert set(report.figures) == {"f1", "prevalence", "confusion", "pr"}
    assert_png(report.figures["confusion"], plots.size_px("confusion", 3))
    assert_png(report.figures["pr"], plots.size_px("pr", m=3))  # only 3 classes to show
    assert confusion.index.tolist() == t["class"].tolist() == ["0", "1", "2"]
    assert confusion.to_numpy().sum() == t["support"].sum()
    np.testing.assert_array_equal(confusion.sum(axis=1), t["support"])
    np.testing.assert_array_equal(confusion.sum(axis=0), t["predicted_tuned"])
    tp = np.diag(confusion.to_numpy())
    np.testing.assert_allclose(t["recall_tuned"], tp / t["support"])
    cv = json.loads(mc.run("tfidf").scores.read_text())["cv"]
    assert t["f1_tuned"].mean() == pytest.approx(cv["tuned"])


def test_binary_tables_and_figures(tmp_path):
    rng = np.random.default_rng(5)
    Y = (rng.random((120, 1)) < 0.3).astype(np.uint8)
    P = np.clip(Y * 0.35 + rng.random((120, 1)) * 0.65, 0, 1)
    tables = run_tables(Y, P, P[:40], ["spam"], "binary", np.array([0.4]), label_names=["ham", "spam"])
    labels = (P >= 0.4).astype(int)
    confusion = tables.confusion.to_numpy()
    assert tables.confusion.index.tolist() == ["ham", "spam"]
    assert confusion[1, 1] == int((labels & Y).sum()) and confusion[0, 1] == int((labels & (1 - Y)).sum())
    assert tables.per_class["f1_tuned"].iloc[0] == pytest.approx(score("f1", Y, labels, "binary"))
    assert [p["points"].keys() for p in tables.pr] == [{"at 0.5": 0, "tuned": 0}.keys()]
    figures = run_figures(tables, "binary", tmp_path, "clf")
    assert set(figures) == {"f1", "prevalence", "confusion", "pr"}
    assert_png(figures["confusion"], plots.size_px("confusion", 2))
    assert_png(figures["pr"], plots.size_px("pr", m=1))


def test_report_of_a_missing_run(ml):
    with pytest.raises(RunError, match=r"no run 'nope' in .*; `comp runs` lists the runs"):
        write_run_report(ml, "nope")


# ---- compare and lb ------------------------------------------------------------------------------


def test_compare(ml):
    result = write_comparison(ml, ["tfidf", "nbsvm"])
    assert result.dir == ml.root / "reports" / "compare-tfidf-vs-nbsvm"
    tfidf = write_run_report(ml, "tfidf").tables.per_class
    assert result.f1["tfidf"].tolist() == tfidf["f1_tuned"].tolist()
    assert set(result.f1["best"]) <= {"tfidf", "nbsvm"}
    a, b = load_run(ml, "tfidf").oof, load_run(ml, "nbsvm").oof
    expected = np.nanmean([np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(a.shape[1])])
    assert result.correlation.loc["tfidf", "nbsvm"] == pytest.approx(expected)
    n = len(result.f1)
    assert_png(result.figures["correlation"], plots.size_px("correlation", m=2))
    assert_png(result.figures["f1"], plots.size_px("compare_f1", n, 2))
    assert result.html.read_text().count("data:image/png;base64,") == 2
    assert result.scores["run"].tolist() == ["tfidf", "nbsvm"]
    with pytest.raises(RunError, match="compare needs at least two different runs"):
        write_comparison(ml, ["tfidf", "tfidf"])


def test_compare_table_rejects_other_classes():
    one = pd.DataFrame({"class": ["a", "b"], "support": [1, 2], "f1_tuned": [0.5, 0.7]})
    two = pd.DataFrame({"class": ["a", "c"], "support": [1, 2], "f1_tuned": [0.6, 0.1]})
    assert compare_table({"x": one, "y": one.assign(f1_tuned=[0.6, 0.7])})["best"].tolist() == ["y", "x"]
    with pytest.raises(DataError, match="run 'y' has other classes than 'x'"):
        compare_table({"x": one, "y": two})


def test_lb_plot(tmp_path):
    class Entry:  # a ledger entry's fields as lb_points reads them
        def __init__(self, run, cv, public_score):
            self.run, self.cv, self.public_score = run, cv, public_score

    rows = [("tfidf", 0.51, 0.50), ("blend", 0.55, None), Entry("deberta", 0.58, 0.57), ("nbsvm", None, 0.4)]
    assert lb_points(rows) == (["tfidf", "deberta"], [0.51, 0.58], [0.50, 0.57])
    path = lb_plot(rows, tmp_path / "lb.png")
    assert_png(path, (700, 600))
    with pytest.raises(CompError, match="no submission has both a CV and a public score yet"):
        lb_plot([("blend", 0.55, None)], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_figures_render_without_a_display(tmp_path):
    # an interactive backend asked for and no display: comp draws on the Agg canvas regardless
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"
    code = "import sys; from comp.plots import lb_scatter; lb_scatter(['a', 'b'], [0.5, 0.6], [0.4, 0.7], sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "x.png")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert_png(tmp_path / "x.png", plots.size_px("lb"))


def test_report_and_compare_commands(ml):
    def comp(*args):
        return subprocess.run(
            [sys.executable, "-m", "comp", "--workspace", str(ml.root), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    result = comp("report", "tfidf", "--out", str(ml.root / "cli-report"))
    assert result.returncode == 0, result.stderr
    assert "F1 tuned" in result.stdout and "wrote cli-report/report.html" in result.stdout
    assert (ml.root / "cli-report" / "f1.png").is_file()
    result = comp("compare", "tfidf", "nbsvm", "--method", "spearman")
    assert result.returncode == 0, result.stderr
    assert "OOF correlation (spearman" in result.stdout
    result = comp("compare", "tfidf")
    assert result.returncode == 1 and "error: compare needs at least two different runs" in result.stderr
    assert "Traceback" not in result.stderr


# ---- train.log -----------------------------------------------------------------------------------


def test_train_log_holds_config_fold_timings_warnings_and_cv(tmp_path):
    ws = make_workspace(tmp_path)
    frame = pd.read_csv(ws.train_csv, dtype=str)
    frame["fear"] = "0"
    frame.loc[0, "fear"] = "1"  # one positive: the training rows of the other folds have none -> a warning
    frame.to_csv(ws.train_csv, index=False)
    result = train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    log = ws.run("tfidf").log.read_text()
    lines = log.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d ", line) for line in lines)
    assert "run tfidf: model tfidf, 3 folds from data/folds-k3-s42.csv" in log
    assert re.search(r"config: \{.*'C': 2\.0", log)
    for k in range(3):
        assert re.search(rf"fold {k}: done in \d+\.\ds", log)
    assert "class 'fear' is all 0 in the training rows" in log
    s = result.scores
    assert f"cv f1_macro: at 0.5 {s.at_05:.4f}, tuned {s.tuned:.4f}, honest {s.honest:.4f}" in lines[-1]


def test_lb_plot_command(tmp_path):
    from comp.ledger import Ledger, LedgerEntry
    from comp.workspace import init_workspace

    ws = init_workspace("test-comp", tmp_path / "ws", {})
    scores = [("tfidf", 0.51, 0.50), ("nbsvm", 0.48, None), ("blend", 0.55, 0.53)]
    with Ledger(ws.ledger_path) as ledger:
        for k, (run, cv, public) in enumerate(scores):
            ledger.add(
                LedgerEntry(
                    None,
                    f"2024-05-0{k + 1}T10:00:00+00:00",
                    run,
                    f"submissions/{run}.csv",
                    f"{k}" * 64,
                    run,
                    "f1_macro",
                    cv + 0.02,
                    cv,
                    k,
                    "complete",
                    public,
                    None,
                    None,
                )
            )
    result = subprocess.run(
        [sys.executable, "-m", "comp", "--workspace", str(ws.root), "lb", "--offline", "--plot"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote submissions/lb.png" in result.stdout
    assert_png(ws.submissions_dir / "lb.png", plots.size_px("lb"))
