"""Every stored or shown score carries its metric and direction; probability metrics never replace
decision thresholds; scores are compared only within one metric."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from comp import console
from comp.cli import app
from comp.data import load_competition
from comp.ensemble import make_ensemble
from comp.evaluation import OofScores, merge_scores, score_entry
from comp.metrics import score
from comp.report import write_comparison, write_run_report
from comp.runs import list_runs, rescore_run
from comp.train import train
from tests.helpers import make_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("metrics"), train_rows=240, test_rows=40)
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\nword_ngrams: [1, 2]\n")
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=3)
    return ws


def _cli(ws, *args):
    width = console.out.width
    console.out.width = 250  # wide enough that no table column is cut
    try:
        return CliRunner().invoke(app, ["--workspace", str(ws.root), *map(str, args)])
    finally:
        console.out.width = width


def _json(path):
    return json.loads(path.read_text())


def test_thresholds_for_a_probability_metric_keep_the_decision_and_record_the_score(ws):
    paths = ws.run("tfidf")
    before_t, before_s = _json(paths.thresholds), _json(paths.scores)
    result = _cli(ws, "thresholds", "tfidf", "--metric", "log_loss")
    assert result.exit_code == 0, result.output
    after_t, after_s = _json(paths.thresholds), _json(paths.scores)
    assert after_t == before_t  # the decision thresholds stay those tuned for f1_macro: no NaN
    assert all(np.isfinite(v) for v in after_t["thresholds"].values())
    assert after_s["metric"] == "f1_macro" and after_s["cv"] == before_s["cv"]
    entry = after_s["other_metrics"]["log_loss"]
    oof = pd.read_parquet(paths.oof)
    Y = load_competition(ws).Y
    expected = score("log_loss", Y, oof.iloc[:, 2:].to_numpy(), "multilabel")
    assert entry["greater_is_better"] is False
    assert entry["cv"]["tuned"] == pytest.approx(expected) and entry["cv"]["honest"] == pytest.approx(expected)
    assert "log_loss (lower is better) by fold" in result.output
    assert "decision thresholds stay tuned for f1_macro" in result.output
    # `comp runs` still shows the F1 in the run's row, labelled as such
    [row] = [s for s in list_runs(ws) if s.name == "tfidf"]
    assert (row.metric, row.honest) == ("f1_macro", before_s["cv"]["honest"])
    # and shows the log loss where it is asked for, by name
    [row] = [s for s in list_runs(ws, "log_loss") if s.name == "tfidf"]
    assert row.metric == "log_loss" and row.greater_is_better is False and row.honest == pytest.approx(expected)
    # re-tuning the label metric keeps the probability metric's entry (the probabilities did not change)
    rescore_run(ws, "tfidf")
    assert _json(paths.scores)["other_metrics"]["log_loss"] == entry


def test_offsets_need_a_label_metric(ws):
    result = _cli(ws, "thresholds", "tfidf", "--metric", "roc_auc_macro", "--offsets")
    assert result.exit_code != 0
    assert "--offsets tunes the decision, but metric 'roc_auc_macro' scores probabilities" in str(result.exception)


def test_a_weighted_blend_for_log_loss_minimises_it_and_compares_members_in_log_loss(ws):
    result = _cli(
        ws, "ensemble", "tfidf", "nbsvm", "--name", "ll-blend", "--method", "weighted", "--metric", "log_loss"
    )
    assert result.exit_code == 0, result.output
    paths = ws.run("ll-blend")
    scores, thresholds, weights = _json(paths.scores), _json(paths.thresholds), _json(paths.weights)
    Y = load_competition(ws).Y
    member_loss = {}
    for name in ("tfidf", "nbsvm"):
        oof = pd.read_parquet(ws.run(name).oof).iloc[:, 2:].to_numpy()
        member_loss[name] = score("log_loss", Y, oof, "multilabel")
        m = scores["members"][name]
        assert m["metric"] == "log_loss" and m["greater_is_better"] is False
        assert m["tuned"] == pytest.approx(member_loss[name])
    assert scores["metric"] == "log_loss" and scores["greater_is_better"] is False
    assert scores["cv"]["tuned"] <= min(member_loss.values()) + 1e-12  # minimised, never maximised
    assert weights["metric"] == "log_loss" and weights["greater_is_better"] is False
    # a probability metric tunes no thresholds: the default decision, never NaN
    assert thresholds["metric"] is None and set(thresholds["thresholds"].values()) == {0.5}
    best = min(member_loss, key=lambda n: scores["members"][n]["honest"])
    shown = re.search(r"vs best member (\S+) ([\d.]+) log_loss: (better|worse|no change)", result.output)
    assert shown is not None, result.output
    assert shown.group(1) == best
    assert float(shown.group(2)) == pytest.approx(scores["members"][best]["honest"], abs=1e-4)
    assert shown.group(3) == ("better" if scores["cv"]["honest"] < scores["members"][best]["honest"] else "worse")


def test_every_file_stores_the_metric_and_direction_of_its_scores(ws):
    make_ensemble(ws, ["tfidf", "nbsvm"], "mean-blend", "mean")
    for run in ("nbsvm", "mean-blend"):
        paths = ws.run(run)
        scores, thresholds = _json(paths.scores), _json(paths.thresholds)
        assert (scores["metric"], scores["greater_is_better"]) == ("f1_macro", True)
        assert (thresholds["metric"], thresholds["greater_is_better"]) == ("f1_macro", True)
        assert thresholds["score"] == pytest.approx(scores["cv"]["tuned"])
        assert thresholds["method"] == "exact per-class F1 search"
    weights = _json(ws.run("mean-blend").weights)
    assert weights["metric"] is None and weights["greater_is_better"] is None  # equal weights, fitted to nothing


def test_thresholds_json_names_the_search_that_ran(ws):
    rescore_run(ws, "nbsvm", "f1_weighted")
    assert _json(ws.run("nbsvm").thresholds)["method"] == "exact per-class F1 search"
    rescore_run(ws, "nbsvm", "recall_macro")
    assert _json(ws.run("nbsvm").thresholds)["method"] == "exact per-class recall search"
    rescore_run(ws, "nbsvm", "f1_micro")
    assert _json(ws.run("nbsvm").thresholds)["method"] == "best global threshold, then per-class coordinate ascent"
    rescore_run(ws, "nbsvm")
    assert _json(ws.run("nbsvm").thresholds)["method"] == "exact per-class F1 search"


def test_comp_runs_labels_mixed_metrics_and_sorts_within_one(ws):
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="tfidf-micro", overrides=["C=0.5"])
    rescore_run(ws, "tfidf-micro", "f1_micro")
    result = _cli(ws, "runs", "--sort", "honest")
    assert result.exit_code == 0, result.output
    assert "f1_micro ↑" in result.output and "f1_macro ↑" in result.output
    warning = result.output[result.output.index("warning: runs scored with another metric than f1_macro: ") :]
    assert "tfidf-micro (f1_micro)" in warning.splitlines()[0]
    runs = list_runs(ws)
    names = [
        line.split()[0]
        for line in result.output.splitlines()
        if line.split() and line.split()[0] in {s.name for s in runs}
    ]
    macro = {s.name: s.honest for s in runs if s.metric == "f1_macro"}
    assert names[: len(macro)] == sorted(macro, key=lambda n: -macro[n])  # like with like, best first
    # the other metrics after, never ranked among them
    assert "tfidf-micro" in names[len(macro) :] and len(names) == len(runs)
    shown = _cli(ws, "runs", "--metric", "f1_micro")
    assert "no f1_micro score recorded for" in shown.output and "tfidf-micro" in shown.output


def test_comp_runs_sorts_a_lower_is_better_metric_ascending(ws):
    for run in ("tfidf", "nbsvm"):
        rescore_run(ws, run, "log_loss")
    result = _cli(ws, "runs", "--metric", "log_loss", "--sort", "honest")
    loss = {s.name: s.honest for s in list_runs(ws, "log_loss") if s.honest is not None}
    order = [line.split()[0] for line in result.output.splitlines() if line.split() and line.split()[0] in loss]
    assert order == sorted(loss, key=loss.get)


def test_compare_shows_one_metric_and_names_runs_without_it(ws):
    if not ws.run("tfidf-micro").exists:  # also when run alone
        train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="tfidf-micro", overrides=["C=0.5"])
        rescore_run(ws, "tfidf-micro", "f1_micro")
    result = write_comparison(ws, ["tfidf", "tfidf-micro"])
    assert result.metric == "f1_macro"
    rows = result.scores.set_index("run")
    assert rows.loc["tfidf", "honest"] == _json(ws.run("tfidf").scores)["cv"]["honest"]
    assert pd.isna(rows.loc["tfidf-micro", "honest"])  # its f1_micro is not shown as an f1_macro
    assert result.notes == [
        "run 'tfidf-micro' has no f1_macro score (it is scored with f1_micro): its CV is left out; "
        "add it with `comp thresholds tfidf-micro --metric f1_macro`"
    ]
    html = result.html.read_text()
    assert "Cross-validation (f1_macro, higher is better)" in html and "has no f1_macro score" in html
    micro = write_comparison(ws, ["tfidf", "tfidf-micro"], metric="f1_micro")
    assert (
        micro.scores.set_index("run").loc["tfidf-micro", "honest"]
        == _json(ws.run("tfidf-micro").scores)["cv"]["honest"]
    )


def test_the_run_report_labels_its_metric_and_other_metrics(ws):
    rescore_run(ws, "tfidf", "log_loss")
    report = write_run_report(ws, "tfidf")
    html = report.html.read_text()
    assert "f1_macro (higher is better)" in html
    assert "log_loss (lower is better)" in html


def test_a_competition_scored_by_log_loss_gets_the_default_decision(tmp_path):
    ws = make_workspace(tmp_path, train_rows=150, test_rows=20)
    yaml_path = ws.root / "comp.yaml"
    yaml_path.write_text(re.sub(r"(?m)^metric: .*$", "metric: log_loss", yaml_path.read_text()))
    assert ws.load_settings().metric == "log_loss"
    result = train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    thresholds, scores = _json(ws.run("tfidf").thresholds), _json(ws.run("tfidf").scores)
    assert thresholds["metric"] is None and set(thresholds["thresholds"].values()) == {0.5}
    assert "log_loss scores probabilities" in thresholds["method"]
    assert (scores["metric"], scores["greater_is_better"]) == ("log_loss", False)
    assert result.scores.honest == result.scores.tuned  # nothing is fitted on the OOF
    # a label metric tuned later becomes the decision, and the log loss is kept as its own entry
    rescore_run(ws, "tfidf", "f1_macro")
    scores = _json(ws.run("tfidf").scores)
    assert scores["metric"] == "f1_macro" and scores["other_metrics"]["log_loss"]["greater_is_better"] is False
    assert _json(ws.run("tfidf").thresholds)["metric"] == "f1_macro"


# ---- pure parts ---------------------------------------------------------------------------------


def _scores(metric, tuned, honest):
    return OofScores(metric, tuned, tuned, honest, [], np.zeros(1), "m", None)


def test_optimism_is_positive_when_tuning_flatters_whichever_way_the_metric_points():
    assert _scores("f1_macro", 0.6, 0.55).optimism == pytest.approx(0.05)
    assert _scores("log_loss", 0.30, 0.35).optimism == pytest.approx(0.05)


def test_score_entry_reads_old_files_and_other_metrics():
    old = {"metric": "log_loss", "cv": {"tuned": 0.3}}  # written before scores carried their direction
    assert score_entry(old)["greater_is_better"] is False
    assert score_entry(old, "f1_macro") is None
    merged, replaces = merge_scores(
        {"metric": "f1_macro", "cv": {"tuned": 0.6}, "per_fold": [], "n_folds": 3}, _scores("roc_auc_macro", 0.8, 0.8)
    )
    assert replaces is False and merged["metric"] == "f1_macro" and merged["n_folds"] == 3
    assert score_entry(merged, "roc_auc_macro")["cv"]["tuned"] == 0.8
