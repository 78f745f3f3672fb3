"""Stacking: the meta-model, its nesting, leak tests, and `comp ensemble --method stack` per task type."""

import json
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from comp.blend import MeanBlender
from comp.chain import Chain, cross_fit
from comp.cli import app
from comp.data import load_competition
from comp.ensemble import make_ensemble
from comp.errors import ConfigError
from comp.evaluation import evaluate_chain
from comp.fetch import fetch_local
from comp.metrics import score
from comp.stack import StackBlender, check_meta_model
from comp.thresholds import ThresholdOptimizer
from comp.train import ensure_folds, train
from comp.workspace import init_workspace
from tests.helpers import TFIDF_CONFIG, make_workspace, multiclass_source


def _members(seed, n=400, C=4, n_members=2, noise=1.0):
    """Labels with co-occurrence and members whose probabilities carry them with independent noise."""
    rng = np.random.default_rng(seed)
    Y = rng.random((n, C)) < np.linspace(0.1, 0.4, C)
    Y[:, 1] |= Y[:, 0] & (rng.random(n) < 0.5)  # class 1 co-occurs with class 0
    logits = [np.where(Y, 1.2, -1.2) + rng.normal(0, noise, (n, C)) for _ in range(n_members)]
    return np.stack([1 / (1 + np.exp(-x)) for x in logits]), Y.astype(int)


def _chain(blender, metric="f1_macro", task="multilabel"):
    return Chain(blender, decision=ThresholdOptimizer(metric, task), task=task)


def _auc(y, s):
    return score("roc_auc_macro", y, s, "multilabel")


def _chance(Y, labels, metric="f1_macro", draws=300, seed=0):
    """Mean and sd of ``metric`` for these predicted labels against row-permuted labels: the score
    of predictions that carry no information about the rows' labels."""
    rng = np.random.default_rng(seed)
    values = [score(metric, Y[rng.permutation(len(Y))], labels, "multilabel") for _ in range(draws)]
    return float(np.mean(values)), float(np.std(values))


# ---- leak tests -------------------------------------------------------------------------------


def test_a_stack_scores_chance_on_a_fold_whose_labels_are_noise():
    M, Y = _members(0)
    folds = np.arange(len(Y)) % 4
    rng = np.random.default_rng(1)
    noisy = Y.copy()
    noisy[folds == 0] = rng.random(noisy[folds == 0].shape) < Y.mean(axis=0)  # same prevalence, no signal
    chain = _chain(StackBlender())
    chain.fit(M, noisy, folds)
    honest = cross_fit(chain, M, noisy, folds, "f1_macro")
    held = folds == 0
    # fold 0's OOF and honest decisions come from fits that never saw fold 0's labels: exactly the
    # same whatever those labels are
    clean = _chain(StackBlender()).fit(M, Y, folds)
    np.testing.assert_array_equal(chain.oof_[held], clean.oof_[held])
    np.testing.assert_array_equal(honest.labels[held], cross_fit(clean, M, Y, folds, "f1_macro").labels[held])
    # ... so they score chance there, and well above it where the labels are real
    assert abs(_auc(noisy[held], chain.oof_[held]) - 0.5) < 0.1
    mean, sd = _chance(noisy[held], honest.labels[held])
    assert honest.per_fold[0] < mean + 3 * sd
    assert _auc(noisy[~held], chain.oof_[~held]) > 0.75
    assert min(honest.per_fold[1:]) > mean + 5 * sd
    # the check has teeth: a meta-model fitted on every row (fold 0 included) does move fold 0
    leaky = StackBlender().fit(M, noisy).transform(M)
    assert not np.allclose(leaky[held], chain.oof_[held])


def test_a_stacked_workspace_run_scores_chance_on_a_fold_trained_on_noise(tmp_path):
    """End to end: members trained by `comp train` on a train.csv whose fold-0 labels are noise."""
    ws = make_workspace(tmp_path, train_rows=360, test_rows=40)
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\nword_ngrams: [1, 2]\n")
    comp = load_competition(ws)
    _, folds = ensure_folds(ws, comp, 4, 42, lambda m: None)
    train_csv = ws.root / "data" / "train.csv"
    frame = pd.read_csv(train_csv, dtype=str)
    classes = comp.settings.label_columns
    rng = np.random.default_rng(3)
    held = folds == 0
    prevalence = comp.Y.mean(axis=0)
    frame.loc[held, classes] = (rng.random((held.sum(), len(classes))) < prevalence).astype(int).astype(str)
    frame.to_csv(train_csv, index=False)
    Y = load_competition(ws).Y
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=4)
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=4)
    result = make_ensemble(ws, ["tfidf", "nbsvm"], "stack", "stack")
    oof = pd.read_parquet(ws.run("stack").oof)[classes].to_numpy()
    assert abs(score("roc_auc_macro", Y[held], oof[held], "multilabel") - 0.5) < 0.12
    M = np.stack([pd.read_parquet(ws.run(n).oof)[classes].to_numpy() for n in ("tfidf", "nbsvm")])
    honest = cross_fit(_chain(StackBlender()), M, Y, folds, "f1_macro")
    assert honest.per_fold == [r["honest"] for r in result.scores.per_fold]
    mean, sd = _chance(Y[held], honest.labels[held])
    assert honest.per_fold[0] < mean + 3 * sd
    assert min(honest.per_fold[1:]) > mean + 3 * sd  # where the labels are real, the stack learns them


def test_stacking_one_member_reproduces_its_thresholds_quality():
    M, Y = _members(2, n=600)
    folds = np.arange(len(Y)) % 5
    alone = cross_fit(_chain(MeanBlender()), M[:1], Y, folds, "f1_macro")
    stacked = cross_fit(_chain(StackBlender()), M[:1], Y, folds, "f1_macro")
    # within the noise of the folds: the spread of per-fold differences over sqrt(K)
    diffs = np.subtract(stacked.per_fold, alone.per_fold)
    noise = diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert abs(stacked.score - alone.score) <= max(3 * noise, 0.01)


def test_stacking_two_identical_members_does_not_gain():
    M, Y = _members(4, n=600)
    folds = np.arange(len(Y)) % 5
    one = cross_fit(_chain(StackBlender()), M[:1], Y, folds, "f1_macro")
    twice = cross_fit(_chain(StackBlender()), np.stack([M[0], M[0]]), Y, folds, "f1_macro")
    assert twice.score <= one.score + 0.005
    assert abs(twice.score - one.score) < 0.01


def test_stacking_uses_the_other_classes_scores():
    # class 1 is (nearly) class 0 here, but its own member column is noise: only a meta-model that
    # reads every class's inputs can predict it
    rng = np.random.default_rng(5)
    n = 500
    Y = np.zeros((n, 3), dtype=int)
    Y[:, 0] = rng.random(n) < 0.4
    Y[:, 1] = Y[:, 0] & (rng.random(n) < 0.9)
    Y[:, 2] = rng.random(n) < 0.3
    P = 1 / (1 + np.exp(-(np.where(Y, 1.5, -1.5) + rng.normal(0, 1, Y.shape))))
    P[:, 1] = rng.random(n)
    folds = np.arange(n) % 5
    alone = cross_fit(_chain(MeanBlender()), P, Y, folds, "f1_macro")
    stacked = cross_fit(_chain(StackBlender()), P, Y, folds, "f1_macro")
    f1 = [score("f1_macro", Y[:, [1]], r.labels[:, [1]], "multilabel") for r in (alone, stacked)]
    assert f1[1] > f1[0] + 0.2


# ---- the meta-model ---------------------------------------------------------------------------


def test_multiclass_and_binary_stacks_give_probabilities():
    rng = np.random.default_rng(6)
    n, C = 300, 3
    y = rng.choice(C, n, p=[0.5, 0.3, 0.2])
    Y = np.eye(C, dtype=int)[y]
    logits = np.stack([2 * Y + rng.normal(0, 1, (n, C)) for _ in range(2)])
    M = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    P = StackBlender("multiclass").fit(M, Y).transform(M)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert (P.argmax(1) == y).mean() > 0.8
    Yb = Y[:, [0]]
    Pb = StackBlender("binary").fit(M[:, :, [0]], Yb).transform(M[:, :, [0]])
    assert Pb.shape == (n, 1) and score("roc_auc_macro", Yb, Pb, "binary") > 0.9


def test_a_class_without_positives_in_the_fitting_rows_predicts_none():
    M, Y = _members(7, n=100, C=3)
    Y[:, 2] = 0
    stack = StackBlender().fit(M, Y)
    assert (stack.transform(M)[:, 2] == 0).all()
    assert stack.weights_.sum() == pytest.approx(1.0)
    y = np.zeros(100, dtype=int)
    P = StackBlender("multiclass").fit(M / M.sum(2, keepdims=True), np.eye(3, dtype=int)[y]).transform(M)
    assert (P[:, 0] == 1).all()


def test_member_weights_are_shares_of_the_coefficients():
    M, Y = _members(8, n=300)
    noise = np.random.default_rng(9).random(M[0].shape)
    stack = StackBlender().fit(np.stack([M[0], noise]), Y)
    assert stack.weights_.sum() == pytest.approx(1.0) and stack.weights_[0] > 0.8


def test_lightgbm_meta_model_is_deterministic_and_honest():
    pytest.importorskip("lightgbm")
    M, Y = _members(10, n=300)
    folds = np.arange(len(Y)) % 3
    chain = _chain(StackBlender(meta_model="lightgbm", n_estimators=30))
    a = evaluate_chain(chain, M, Y, folds, "f1_macro")
    b = evaluate_chain(_chain(StackBlender(meta_model="lightgbm", n_estimators=30)), M, Y, folds, "f1_macro")
    assert a.honest == b.honest and a.honest > 0.6
    np.testing.assert_array_equal(
        chain.oof_, _chain(StackBlender(meta_model="lightgbm", n_estimators=30)).fit(M, Y, folds).oof_
    )


def test_a_missing_lightgbm_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm now raises ImportError
    with pytest.raises(
        ConfigError, match=r"^meta-model 'lightgbm' needs the LightGBM package: pip install 'comp\[stack\]'"
    ):
        check_meta_model("lightgbm")


def test_a_chain_with_a_stack_needs_fold_ids():
    M, Y = _members(11, n=80)
    with pytest.raises(
        ConfigError, match="StackBlender is fitted out of fold: give the chain the fold id of every row"
    ):
        _chain(StackBlender()).fit(M, Y)
    with pytest.raises(ConfigError, match="needs at least 2 folds among its fitting rows"):
        _chain(StackBlender()).fit(M, Y, np.zeros(80))


# ---- from the command line, per task type -------------------------------------------------------


def binary_source(folder, train_rows=200, test_rows=40, seed=5):
    rng = np.random.default_rng(seed)
    cues = {0: ["bad", "awful", "hate"], 1: ["good", "great", "love"]}
    filler = "the a day work phone bus rain game team movie".split()
    n = train_rows + test_rows
    y = (rng.random(n) < 0.35).astype(int)
    texts = [" ".join([*rng.choice(filler, 4), *rng.choice(cues[c], 1 + (rng.random() < 0.5))]) for c in y]
    flip = rng.random(n) < 0.15  # some rows get the other class's cue: not perfectly separable
    texts = [t + " " + rng.choice(cues[1 - c]) if f else t for t, c, f in zip(texts, y, flip, strict=True)]
    ids = [f"b{i}" for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": ids[:train_rows], "text": texts[:train_rows], "label": y[:train_rows]}).to_csv(
        folder / "train.csv", index=False
    )
    pd.DataFrame({"id": ids[train_rows:], "text": texts[train_rows:]}).to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": ids[train_rows:], "label": 0}).to_csv(folder / "sample_submission.csv", index=False)


def _workspace(tmp_path, kind):
    source = tmp_path / "download"
    if kind == "binary":
        binary_source(source)
    elif kind == "multiclass":
        multiclass_source(source, train_rows=200, test_rows=40)
    else:
        return make_workspace(tmp_path, train_rows=200, test_rows=40)
    ws = init_workspace("test-comp", tmp_path / "ws", {"tfidf.yaml": TFIDF_CONFIG})
    fetch_local(ws, source)
    return ws


@pytest.mark.parametrize("kind", ["multilabel", "multiclass", "binary"])
def test_comp_ensemble_method_stack_for_every_task(tmp_path, kind):
    ws = _workspace(tmp_path, kind)
    assert ws.load_settings().task == kind
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\nword_ngrams: [1, 2]\n")
    runner = CliRunner()
    for config in ("tfidf", "nbsvm"):
        result = runner.invoke(
            app, ["--workspace", str(ws.root), "train", str(ws.configs_dir / f"{config}.yaml"), "--folds", "3"]
        )
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["--workspace", str(ws.root), "ensemble", "tfidf", "nbsvm", "--name", "stack", "--method", "stack"]
    )
    assert result.exit_code == 0, result.output
    metric = ws.load_settings().metric
    assert f"ensemble stack: {metric} (higher is better) by fold" in result.output
    assert "vs best member" in result.output
    scores = json.loads(ws.run("stack").scores.read_text())
    assert scores["metric"] == metric and scores["greater_is_better"] is True
    # 200 rows, 3 folds: a meta-model has little to learn from, but it must stay near its members
    best = max(m["honest"] for m in scores["members"].values())
    assert scores["cv"]["honest"] > best - 0.1
    record = ws.run("stack").run_yaml.read_text()
    assert "method: stack" in record and "meta_model: logistic" in record
    commands = [["thresholds", "stack"], ["submit", "stack", "--dry-run"]] + (
        [["report", "stack"]] if kind == "binary" else []
    )
    for args in commands:
        result = runner.invoke(app, ["--workspace", str(ws.root), *args])
        assert result.exit_code == 0, (args, result.output)
    oof = pd.read_parquet(ws.run("stack").oof)
    if kind == "multiclass":
        np.testing.assert_allclose(oof.iloc[:, 2:].sum(axis=1), 1.0, atol=1e-9)
