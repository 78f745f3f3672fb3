import json

import numpy as np
import pytest

from comp.ensemble import CaruanaBlender, make_ensemble, rank_transform
from comp.errors import RunError
from comp.runs import list_runs, load_run, rescore_run
from comp.train import train
from tests.helpers import make_workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("ens"))
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\nword_ngrams: [1, 2]\n")
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=4)
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=4)
    return ws


@pytest.mark.parametrize("method", ["mean", "rank", "weighted"])
def test_ensemble_is_a_run_with_the_same_files(ws, method):
    result = make_ensemble(ws, ["tfidf", "nbsvm"], f"blend-{method}", method)
    paths = ws.run(f"blend-{method}")
    for path in (paths.oof, paths.test, paths.scores, paths.thresholds, paths.weights, paths.run_yaml):
        assert path.is_file()
    weights = json.loads(paths.weights.read_text())["weights"]
    assert sum(weights.values()) == pytest.approx(1.0) and min(weights.values()) >= 0
    blend = load_run(ws, f"blend-{method}")
    assert blend.oof.shape == load_run(ws, "tfidf").oof.shape
    assert result.scores.tuned >= result.scores.honest - 1e-9
    # the ensemble is accepted by the other commands unchanged
    rescore_run(ws, f"blend-{method}")
    assert f"blend-{method}" in [r.name for r in list_runs(ws)]


def test_mean_blend_is_the_average(ws):
    make_ensemble(ws, ["tfidf", "nbsvm"], "avg", "mean")
    a, b, m = (load_run(ws, n) for n in ("tfidf", "nbsvm", "avg"))
    np.testing.assert_allclose(m.oof, (a.oof + b.oof) / 2)
    np.testing.assert_allclose(m.test, (a.test + b.test) / 2)


def test_caruana_prefers_the_informative_member():
    rng = np.random.default_rng(0)
    Y = (rng.random((400, 3)) < 0.3).astype(np.uint8)
    good = np.clip(Y * 0.6 + rng.random(Y.shape) * 0.5, 0, 1)
    noise = rng.random(Y.shape)
    blender = CaruanaBlender("f1_macro", "multilabel").fit([noise, good], Y)
    assert blender.weights_[1] > 0.8


def test_rank_transform_keeps_test_on_the_oof_scale():
    oof = np.array([[0.1], [0.4], [0.2], [0.9]])
    test = np.array([[0.4], [1.0], [0.0]])
    o, t = rank_transform(oof, test)
    assert o.ravel().tolist() == [0.25, 0.75, 0.5, 1.0]
    assert t.ravel().tolist() == [0.75, 1.0, 0.0]


def test_bad_ensembles(ws):
    with pytest.raises(RunError, match="an ensemble needs at least two different runs"):
        make_ensemble(ws, ["tfidf"], "x")
    with pytest.raises(RunError, match=r"no run 'nope' in .*; `comp runs` lists the runs"):
        make_ensemble(ws, ["tfidf", "nope"], "x")
    with pytest.raises(RunError, match="unknown ensemble method 'median'"):
        make_ensemble(ws, ["tfidf", "nbsvm"], "x", "median")
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="tfidf-k3")
    with pytest.raises(RunError, match=r"runs 'tfidf' and 'tfidf-k3' were trained on different fold files \(data/folds-k4-s42.csv vs data/folds-k3-s42.csv\)"):
        make_ensemble(ws, ["tfidf", "tfidf-k3"], "x")
    make_ensemble(ws, ["tfidf", "nbsvm"], "twice")
    with pytest.raises(RunError, match="run 'twice' already exists; pass --force"):
        make_ensemble(ws, ["tfidf", "nbsvm"], "twice")


def test_rescoring_a_weighted_blend_keeps_weights_out_of_the_held_out_folds(ws):
    result = make_ensemble(ws, ["tfidf", "nbsvm"], "weighted-rescore", "weighted")
    scores, _, _ = rescore_run(ws, "weighted-rescore")
    assert scores.honest == pytest.approx(result.scores.honest)
