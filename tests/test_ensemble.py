import json

import numpy as np
import pytest

from comp.blend import CaruanaBlender, RankBlender, rank_transform
from comp.chain import Chain, cross_fit
from comp.data import load_competition
from comp.ensemble import make_ensemble
from comp.errors import ConfigError, RunError
from comp.metrics import score
from comp.runs import list_runs, load_run, rescore_run
from comp.stack import StackBlender
from comp.thresholds import ThresholdOptimizer
from comp.train import train
from tests.helpers import make_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("ens"))
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\nword_ngrams: [1, 2]\n")
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=4)
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=4)
    return ws


def _members(ws, names=("tfidf", "nbsvm")):
    runs = [load_run(ws, n) for n in names]
    return np.stack([r.oof for r in runs]), np.stack([r.test for r in runs]), runs[0].folds, load_competition(ws).Y


@pytest.mark.parametrize("method", ["mean", "rank", "weighted", "stack"])
def test_ensemble_is_a_run_with_the_same_files(ws, method):
    result = make_ensemble(ws, ["tfidf", "nbsvm"], f"blend-{method}", method)
    paths = ws.run(f"blend-{method}")
    for path in (paths.oof, paths.test, paths.scores, paths.thresholds, paths.weights, paths.run_yaml):
        assert path.is_file()
    weights = json.loads(paths.weights.read_text())
    assert sum(weights["weights"].values()) == pytest.approx(1.0) and min(weights["weights"].values()) >= 0
    assert weights["method"] == method and weights["members"] == ["tfidf", "nbsvm"]
    # the objective the weights were fitted for: only a weighted blend fits weights to the metric
    assert (weights["metric"], weights["greater_is_better"]) == (
        ("f1_macro", True) if method == "weighted" else (None, None)
    )
    blend = load_run(ws, f"blend-{method}")
    assert blend.oof.shape == load_run(ws, "tfidf").oof.shape
    scores = json.loads(paths.scores.read_text())
    assert scores["metric"] == "f1_macro" and scores["greater_is_better"] is True
    assert {m["metric"] for m in scores["members"].values()} == {"f1_macro"}
    # rescoring rebuilds the same chain from run.yaml: the same honest CV, not a re-tuned one
    again, _, _ = rescore_run(ws, f"blend-{method}")
    assert again.honest == pytest.approx(result.scores.honest, abs=1e-12)
    assert again.tuned == pytest.approx(result.scores.tuned, abs=1e-12)
    assert f"blend-{method}" in [r.name for r in list_runs(ws)]


def test_mean_blend_is_the_average(ws):
    make_ensemble(ws, ["tfidf", "nbsvm"], "avg", "mean")
    a, b, m = (load_run(ws, n) for n in ("tfidf", "nbsvm", "avg"))
    np.testing.assert_allclose(m.oof, (a.oof + b.oof) / 2)
    np.testing.assert_allclose(m.test, (a.test + b.test) / 2)


def test_weighted_honest_refits_weights_and_thresholds_without_each_fold(ws):
    result = make_ensemble(ws, ["tfidf", "nbsvm"], "weighted-honest", "weighted")
    M, _, folds, Y = _members(ws)
    labels = np.zeros(Y.shape, dtype=int)
    for k in range(4):
        fit, held = folds != k, folds == k
        blender = CaruanaBlender("f1_macro", "multilabel").fit(M[:, fit], Y[fit])
        opt = ThresholdOptimizer("f1_macro").fit(blender.transform(M[:, fit]), Y[fit])
        labels[held] = opt.transform(blender.transform(M[:, held]))
        assert result.scores.per_fold[k]["honest"] == pytest.approx(
            score("f1_macro", Y[held], labels[held], "multilabel")
        )
    assert result.scores.honest == pytest.approx(score("f1_macro", Y, labels, "multilabel"))


@pytest.fixture(scope="module")
def stacked(ws):
    return make_ensemble(ws, ["tfidf", "nbsvm"], "stacked", "stack")


def test_stack_oof_is_nested_and_test_uses_every_oof_row(ws, stacked):
    M, T, folds, Y = _members(ws)
    run = load_run(ws, "stacked")
    for k in range(4):
        fit, held = folds != k, folds == k
        expected = StackBlender().fit(M[:, fit], Y[fit]).transform(M[:, held])
        np.testing.assert_allclose(run.oof[held], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(run.test, StackBlender().fit(M, Y).transform(T), rtol=0, atol=1e-12)
    # the thresholds are fitted on the nested OOF
    t = json.loads(ws.run("stacked").thresholds.read_text())["thresholds"]
    np.testing.assert_allclose(list(t.values()), ThresholdOptimizer("f1_macro").fit(run.oof, Y).thresholds_)


def test_stack_honest_cv_refits_meta_model_and_thresholds_without_each_fold(ws, stacked):
    result = stacked
    M, _, folds, Y = _members(ws)
    k = 2
    fit, held = folds != k, folds == k
    # inside: fold k's chain sees only the other three folds, and cross-fits its stack over them
    inner = np.zeros(Y[fit].shape)
    for j in np.unique(folds[fit]):
        a, b = fit & (folds != j), folds == j
        inner[b[fit]] = StackBlender().fit(M[:, a], Y[a]).transform(M[:, b])
    opt = ThresholdOptimizer("f1_macro").fit(inner, Y[fit])
    labels = opt.transform(StackBlender().fit(M[:, fit], Y[fit]).transform(M[:, held]))
    assert result.scores.per_fold[k]["honest"] == pytest.approx(score("f1_macro", Y[held], labels, "multilabel"))


def test_caruana_prefers_the_informative_member():
    rng = np.random.default_rng(0)
    Y = (rng.random((400, 3)) < 0.3).astype(np.uint8)
    good = np.clip(Y * 0.6 + rng.random(Y.shape) * 0.5, 0, 1)
    noise = rng.random(Y.shape)
    blender = CaruanaBlender("f1_macro", "multilabel").fit(np.stack([noise, good]), Y)
    assert blender.weights_[1] > 0.8


def test_caruana_minimises_a_lower_is_better_metric():
    rng = np.random.default_rng(1)
    Y = (rng.random((300, 3)) < 0.3).astype(np.uint8)
    calibrated = np.clip(np.where(Y, 0.6, 0.3) + rng.normal(0, 0.15, Y.shape), 0.01, 0.99)
    overconfident = np.where(calibrated > 0.45, 0.999, 0.001)  # its mistakes cost ~7 nats each
    assert score("log_loss", Y, overconfident, "multilabel") > 2 * score("log_loss", Y, calibrated, "multilabel")
    M = np.stack([overconfident, calibrated])
    blender = CaruanaBlender("log_loss", "multilabel").fit(M, Y)
    assert blender.score_ == pytest.approx(score("log_loss", Y, blender.transform(M), "multilabel"))
    # the first pick is the best single member, and steps only ever lower the loss from there
    assert blender.score_ <= score("log_loss", Y, calibrated, "multilabel")
    assert blender.weights_[1] > 0.5


def test_rank_transform_keeps_test_on_the_oof_scale():
    oof = np.array([[0.1], [0.4], [0.2], [0.9]])
    test = np.array([[0.4], [1.0], [0.0]])
    o, t = rank_transform(oof, test)
    assert o.ravel().tolist() == [0.25, 0.75, 0.5, 1.0]
    assert t.ravel().tolist() == [0.75, 1.0, 0.0]


def test_rank_blend_maps_a_held_out_fold_through_the_other_folds(ws):
    M, _, folds, Y = _members(ws)
    honest = cross_fit(Chain(RankBlender(), decision=ThresholdOptimizer()), M, Y, folds, "f1_macro")
    held = folds == 1
    expected = RankBlender().fit(M[:, ~held]).transform(M[:, held])
    np.testing.assert_array_equal(honest.proba[held], expected)


def test_bad_ensembles(ws):
    with pytest.raises(RunError, match="an ensemble needs at least two different runs"):
        make_ensemble(ws, ["tfidf"], "x")
    with pytest.raises(RunError, match=r"no run 'nope' in .*; `comp runs` lists the runs"):
        make_ensemble(ws, ["tfidf", "nope"], "x")
    with pytest.raises(RunError, match="unknown ensemble method 'median'"):
        make_ensemble(ws, ["tfidf", "nbsvm"], "x", "median")
    with pytest.raises(ConfigError, match="unknown meta-model 'xgboost'; choose one of logistic, lightgbm"):
        make_ensemble(ws, ["tfidf", "nbsvm"], "x", "stack", meta_model="xgboost")
    with pytest.raises(RunError, match="--meta-c must be positive"):
        make_ensemble(ws, ["tfidf", "nbsvm"], "x", "stack", meta_c=0)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="tfidf-k3")
    with pytest.raises(
        RunError,
        match=r"runs 'tfidf' and 'tfidf-k3' were trained on different fold files "
        r"\(data/folds-k4-s42.csv vs data/folds-k3-s42.csv\)",
    ):
        make_ensemble(ws, ["tfidf", "tfidf-k3"], "x")
    make_ensemble(ws, ["tfidf", "nbsvm"], "twice")
    with pytest.raises(RunError, match="run 'twice' already exists; pass --force"):
        make_ensemble(ws, ["tfidf", "nbsvm"], "twice")
    assert not ws.run("x").exists


def test_stacking_needs_three_folds(tmp_path):
    ws = make_workspace(tmp_path, train_rows=120, test_rows=20)
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\n")
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=2)
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=2)
    with pytest.raises(
        RunError, match="stacking needs at least 3 folds .* the members have 2; retrain them with --folds 3"
    ):
        make_ensemble(ws, ["tfidf", "nbsvm"], "s", "stack")


def test_rescoring_a_weighted_blend_keeps_weights_out_of_the_held_out_folds(ws):
    result = make_ensemble(ws, ["tfidf", "nbsvm"], "weighted-rescore", "weighted")
    scores, _, _ = rescore_run(ws, "weighted-rescore")
    assert scores.honest == pytest.approx(result.scores.honest)


def test_rescoring_an_ensemble_whose_member_was_retrained_is_refused(tmp_path):
    ws = make_workspace(tmp_path, train_rows=150, test_rows=20)
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\n")
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=3)
    make_ensemble(ws, ["tfidf", "nbsvm"], "blend", "mean")
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=3, overrides=["alpha=5.0"], force=True)
    with pytest.raises(
        RunError, match=r"run 'blend' no longer matches its member runs \(tfidf, nbsvm\).*--name blend --force"
    ):
        rescore_run(ws, "blend")
