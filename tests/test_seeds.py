"""Seed averaging (`seeds: N`, `comp train --seeds N`): each fold is N tasks whose probabilities are
averaged; `--seeds 1` is today's run to the byte; a run killed between two seeds of a fold resumes
per (fold, seed) to the same bytes."""

import json
import signal

import numpy as np
import pytest

from comp.models import FAMILIES
from comp.runs import load_run
from comp.seeds import task_seed
from comp.train import train
from tests import blocking_family as bf
from tests.helpers import make_workspace

BLOCKING = "model: blocking\nword_ngrams: [1, 2]\nchar_ngrams: null\nmin_df: 1\nC: 2.0\nn_jobs: 1\n"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("seeds"), train_rows=150, test_rows=50)
    (ws.configs_dir / "m.yaml").write_text(BLOCKING)
    return ws


def _outputs(ws, run):
    paths = ws.run(run)
    scores = json.loads(paths.scores.read_text())
    for row in scores["per_fold"]:
        row.pop("seconds")
    scores.pop("seconds")
    return paths.oof.read_bytes(), paths.test.read_bytes(), paths.thresholds.read_bytes(), scores


def test_seeds_1_gives_the_bytes_of_a_run_without_it(ws):
    config = ws.configs_dir / "tfidf.yaml"
    train(ws, config, n_folds=3, name="plain")
    train(ws, config, n_folds=3, name="one-seed", seeds=1)
    assert _outputs(ws, "plain") == _outputs(ws, "one-seed")
    assert not list(ws.run("one-seed").dir.glob("fold-*/seed-*"))  # the one-seed layout is today's
    assert "seeds" not in json.loads(ws.run("one-seed").scores.read_text())


def test_seeds_are_averaged_per_fold_and_their_spread_is_reported(ws):
    result = train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="three", seeds=3)
    paths = ws.run("three")
    for k in range(3):
        seeds = [np.load(paths.seed_dir(k, s) / "oof.npy") for s in range(3)]
        np.testing.assert_array_equal(np.load(paths.fold_oof(k)), np.mean(np.stack(seeds), axis=0))
        facts = [json.loads((paths.seed_dir(k, s) / "done.json").read_text()) for s in range(3)]
        assert [f["seed_value"] for f in facts] == [task_seed(42, k, s) for s in range(3)]
        assert facts[0]["seed_value"] == 42 + k and len({f["seed_value"] for f in facts}) == 3
        assert json.loads(paths.fold_done(k).read_text())["seeds"] == 3
    # seed 0 of each fold is the one-seed run's model; the other seeds are other models
    if not ws.run("plain").oof.is_file():
        train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="plain")
    plain = load_run(ws, "plain")
    np.testing.assert_array_equal(np.load(paths.seed_dir(0, 0) / "oof.npy"), plain.oof[plain.folds == 0])
    assert not np.array_equal(np.load(paths.seed_dir(0, 1) / "oof.npy"), np.load(paths.seed_dir(0, 0) / "oof.npy"))
    spread = json.loads(paths.scores.read_text())["seeds"]
    assert spread["n"] == 3 and len(spread["per_seed"]) == 3 and spread["metric"] == "f1_macro"
    for row in spread["per_class_f1"].values():
        assert 0 <= row["min"] <= row["max"] <= 1 and row["std"] >= 0
    assert result.scores is not None and "3 seeds: honest f1_macro per seed" in paths.log.read_text()
    # another seed count is another run, refused by name
    with pytest.raises(Exception, match="different config .*seeds: 3 -> 2"):
        train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="three", seeds=2)


def test_kill_9_between_two_seeds_of_a_fold_resumes_per_fold_and_seed(ws, tmp_path, monkeypatch):
    monkeypatch.setitem(FAMILIES, "blocking", "tests.blocking_family")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    (barrier / "release-0").write_text("")
    (barrier / "release-1.0").write_text("")
    args = ("--workspace", ws.root, "train", ws.configs_dir / "m.yaml", "--folds", 3, "--seeds", 2, "--name", "killed")
    victim = bf.start(*args, barrier=barrier)
    bf.wait_for(barrier / "started-1.1", process=victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    paths = ws.run("killed")
    assert paths.fold_done(0).is_file() and (paths.seed_dir(1, 0) / "done.json").is_file()
    assert not (paths.seed_dir(1, 1) / "done.json").exists() and not paths.fold_done(1).exists()
    done = bf.run(*args)
    assert done.returncode == 0, done.stderr
    assert "2 seeds: honest f1_macro per seed" in done.stdout
    log = paths.log.read_text()
    assert log.count("fold 1 seed 0: done in") == 1 and log.count("fold 0 seed 1: done in") == 1
    train(ws, ws.configs_dir / "m.yaml", n_folds=3, seeds=2, name="uninterrupted")
    assert _outputs(ws, "killed") == _outputs(ws, "uninterrupted")
    for k in range(3):
        for s in range(2):
            assert (paths.seed_dir(k, s) / "oof.npy").read_bytes() == (
                ws.run("uninterrupted").seed_dir(k, s) / "oof.npy"
            ).read_bytes()


def test_seed_index_trains_one_task(ws):
    first = train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="tasks", seeds=2, only_fold=2, seed_index=1)
    paths = ws.run("tasks")
    assert first.trained == [2] and (paths.seed_dir(2, 1) / "done.json").is_file()
    assert not (paths.seed_dir(2, 0) / "done.json").exists() and first.scores is None
    with pytest.raises(Exception, match="--seed-index 2 is out of range: run 'tasks' has seeds 0..1"):
        train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="tasks", seeds=2, only_fold=0, seed_index=2)


def test_comp_predict_averages_the_saved_seed_models_as_train_does(ws):
    from comp.predict import predict_run

    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="saved", seeds=2, overrides=["save_models=true"])
    paths = ws.run("saved")
    assert (paths.seed_dir(1, 1) / "model" / "model.pkl").is_file()
    frame = predict_run(ws, "saved", ws.test_csv)
    run = load_run(ws, "saved")
    np.testing.assert_allclose(frame[run.classes].to_numpy(), run.test, rtol=0, atol=1e-12)
