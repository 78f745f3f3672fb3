import json

import numpy as np
import pandas as pd
import pytest

import comp.train as training
from comp.data import load_competition
from comp.errors import ConfigError, RunError
from comp.metrics import score
from comp.runs import list_runs, load_run, rescore_run
from comp.thresholds import ThresholdOptimizer
from comp.train import train
from tests.helpers import make_workspace


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path)


def _config(ws, name="tfidf.yaml"):
    return ws.configs_dir / name


def test_tfidf_run_writes_every_run_file(ws):
    result = train(ws, _config(ws), n_folds=4)
    assert result.trained == [0, 1, 2, 3] and result.pending == []
    paths = ws.run("tfidf")
    oof = pd.read_parquet(paths.oof)
    test = pd.read_parquet(paths.test)
    classes = ["joy", "optimism", "anger", "disgust", "sadness", "fear"]
    assert list(oof.columns) == ["ID", "fold", *classes]
    assert list(test.columns) == ["ID", *classes]
    assert len(oof) == 300 and len(test) == 100 and sorted(oof["fold"].unique()) == [0, 1, 2, 3]
    scores = json.loads(paths.scores.read_text())
    cv = scores["cv"]
    # the exact per-class search is the in-sample optimum over every cut, the 0.5 cut included
    assert cv["tuned"] >= cv["at_0.5"] - 1e-12
    # honest: each fold scored with thresholds fitted on the other folds' OOF rows (tuned >= honest is
    # not guaranteed, so it is recomputed instead)
    P, folds = oof[classes].to_numpy(), oof["fold"].to_numpy()
    Y = load_competition(ws).Y
    for k, row in enumerate(scores["per_fold"]):
        held = folds == k
        labels = ThresholdOptimizer("f1_macro").fit(P[~held], Y[~held]).transform(P[held])
        assert row["honest"] == pytest.approx(score("f1_macro", Y[held], labels, "multilabel"), abs=1e-12)
    assert cv["honest"] > 0.5  # the synthetic cues are learnable
    assert len(scores["per_fold"]) == 4
    thresholds = json.loads(paths.thresholds.read_text())
    assert list(thresholds["thresholds"]) == classes
    record = ws.run("tfidf").run_yaml.read_text()
    assert "hash:" in record and "folds-k4-s42.csv" in record and "scikit-learn" in record
    assert paths.log.read_text().count("done in") == 4
    [summary] = list_runs(ws)
    assert summary.status == "done" and summary.honest == pytest.approx(cv["honest"])


def test_interrupted_run_resumes_to_identical_oof(ws, monkeypatch):
    reference = train(ws, _config(ws), n_folds=5, name="reference")
    real = training.train_fold

    def crash_on_fold_3(*args, **kwargs):
        if args[1].fold == 3:  # (plan, unit)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_fold", crash_on_fold_3)
    with pytest.raises(KeyboardInterrupt):
        train(ws, _config(ws), n_folds=5, name="resumed")
    paths = ws.run("resumed")
    assert [paths.fold_done(k).is_file() for k in range(5)] == [True, True, True, False, False]
    assert not paths.oof.exists()
    monkeypatch.setattr(training, "train_fold", real)
    result = train(ws, _config(ws), n_folds=5, name="resumed")
    assert result.skipped == [0, 1, 2] and result.trained == [3, 4]
    a, b = load_run(ws, "reference"), load_run(ws, "resumed")
    np.testing.assert_array_equal(a.oof, b.oof)
    np.testing.assert_array_equal(a.test, b.test)
    assert reference.scores.honest == result.scores.honest


def test_single_fold_then_assembly(ws):
    first = train(ws, _config(ws), n_folds=3, only_fold=1)
    assert first.trained == [1] and first.pending == [0, 2] and first.scores is None
    assert not ws.run("tfidf").oof.exists()
    train(ws, _config(ws), n_folds=3, only_fold=0)
    last = train(ws, _config(ws), n_folds=3, only_fold=2)
    assert last.scores is not None and ws.run("tfidf").oof.exists()
    with pytest.raises(RunError, match=r"--fold 3 is out of range: folds are 0..2"):
        train(ws, _config(ws), n_folds=3, only_fold=3)


def test_changed_config_is_refused_unless_force_or_new_name(ws):
    train(ws, _config(ws), n_folds=3)
    with pytest.raises(
        RunError, match=r"run 'tfidf' already exists with a different config \(C: 2.0 -> 1.0\); pass --force"
    ):
        train(ws, _config(ws), n_folds=3, overrides=["C=1"])
    train(ws, _config(ws), n_folds=3, overrides=["C=1"], name="tfidf-c1")
    result = train(ws, _config(ws), n_folds=3, overrides=["C=1"], force=True)
    assert result.trained == [0, 1, 2]
    with pytest.raises(RunError, match=r"was trained on data/folds-k3-s42.csv .* not on data/folds-k4-s42.csv"):
        train(ws, _config(ws), n_folds=4, overrides=["C=1"])


def test_class_constant_in_a_training_fold_warns_and_predicts_prevalence(ws):
    train_csv = ws.data_dir / "train.csv"
    frame = pd.read_csv(train_csv, dtype=str)
    frame["fear"] = "0"
    frame.loc[0, "fear"] = "1"  # a single positive row: its fold's training rows have none
    frame.to_csv(train_csv, index=False)
    result = train(ws, _config(ws), n_folds=3)
    log = ws.run("tfidf").log.read_text()
    assert "class 'fear' is all 0 in the training rows" in log
    run = load_run(ws, "tfidf")
    fold_of_row0 = run.folds[0]
    assert np.all(run.oof[run.folds == fold_of_row0, 5] == 0.0)
    assert result.scores is not None


def test_unknown_key_in_config_file(ws):
    bad = ws.configs_dir / "bad.yaml"
    bad.write_text("model: tfidf\nngrams: 2\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) ngrams; valid keys are"):
        train(ws, bad)


def test_multiclass_and_nbsvm(tmp_path):
    ws = make_workspace(tmp_path, kind="multiclass")
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\nword_ngrams: [1, 2]\n")
    for name in ("tfidf.yaml", "nbsvm.yaml"):
        result = train(ws, ws.configs_dir / name, n_folds=3)
        run = load_run(ws, name.removesuffix(".yaml"))
        np.testing.assert_allclose(run.oof.sum(axis=1), 1.0, rtol=1e-5)
        assert result.scores.honest > 0.8
    scores, _, _ = rescore_run(ws, "tfidf", class_offsets=True)
    assert scores.method == "argmax + class offsets"


def test_a_new_config_key_at_its_default_does_not_block_resuming(ws):
    import yaml

    train(ws, _config(ws), n_folds=3, only_fold=0)
    paths = ws.run("tfidf")
    record = yaml.safe_load(paths.run_yaml.read_text())
    del record["config"]["max_df"]  # as if the run started before the family had this key
    paths.run_yaml.write_text(yaml.safe_dump(record))
    result = train(ws, _config(ws), n_folds=3)
    assert result.skipped == [0] and result.trained == [1, 2]


def test_predict_command_with_saved_fold_models(ws):
    import subprocess
    import sys

    train(ws, _config(ws), n_folds=3, overrides=["save_models=true"])
    assert all(ws.run("tfidf").fold_model_dir(k).is_dir() for k in range(3))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "comp",
            "--workspace",
            str(ws.root),
            "predict",
            "tfidf",
            "--test",
            str(ws.test_csv),
            "--out",
            str(ws.root / "p.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    predicted = pd.read_csv(ws.root / "p.csv", dtype={"ID": str})
    np.testing.assert_allclose(predicted.iloc[:, 1:].to_numpy(), load_run(ws, "tfidf").test, atol=1e-6)


def test_bad_values_stop_before_any_fold_file_or_run_is_written(ws):
    for path in ws.data_dir.glob("folds-*.csv"):
        path.unlink()
    for overrides, message in (
        (["max_iter=-5"], r"max_iter: -5 is rejected by scikit-learn"),
        (["strip_accents=greek"], r"strip_accents: 'greek' is rejected by scikit-learn"),
        (["min_df=0"], r"min_df: 0 is rejected by scikit-learn"),
    ):
        with pytest.raises(ConfigError, match=message):
            train(ws, _config(ws), n_folds=3, overrides=overrides)
    with pytest.raises(ConfigError, match=r"--folds 0: need at least 2 folds"):
        train(ws, _config(ws), n_folds=0)  # today: silently comp.yaml's folds
    assert not list(ws.data_dir.glob("folds-*.csv")) and not ws.runs_dir.exists()


def test_run_files_get_the_umask_mode_like_data_files(ws):
    import os
    import stat

    old = os.umask(0o022)
    try:
        train(ws, _config(ws), n_folds=3)
    finally:
        os.umask(old)
    paths = ws.run("tfidf")
    for path in (paths.run_yaml, paths.oof, paths.scores, paths.fold_done(0), paths.fold_oof(0)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # mkstemp made them 0600


def test_registered_families_only():
    from comp.models import available_families, get_family

    assert available_families() == ["embeddings", "generative", "nbsvm", "prompt", "tfidf", "transformer"]
    for name in ("decoders", "common", "base"):
        with pytest.raises(ConfigError, match=rf"unknown model '{name}'"):
            get_family(name)
