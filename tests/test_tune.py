"""`comp tune`: Optuna on the honest CV, a study that several real processes join, kill -9 of a
worker, fold-level pruning, the space checked against the family, trials that are ordinary runs."""

import signal

import optuna
import pytest
from optuna.trial import TrialState

from comp.errors import ConfigError, RunError
from comp.models import FAMILIES
from comp.runs import list_runs, load_run
from comp.tune.objective import subset_score
from comp.tune.show import show_study
from comp.tune.study import open_storage
from comp.tune.worker import load_study, setup_study, tune
from tests import blocking_family as bf
from tests.helpers import make_workspace

BLOCKING = "model: blocking\nword_ngrams: [1, 2]\nchar_ngrams: null\nmin_df: 1\nC: 2.0\nn_jobs: 1\n"
SPACE = "C: {log_uniform: [0.1, 30]}\n"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("tune"), train_rows=150, test_rows=50)
    (ws.configs_dir / "m.yaml").write_text(BLOCKING)
    (ws.configs_dir / "space.yaml").write_text(SPACE)
    return ws


def _load(ws, study):
    return optuna.load_study(study_name=study, storage=open_storage(ws.study_dir(study), None))


def _tune_cli(ws, *args, barrier=None):
    return bf.start(
        "--workspace",
        ws.root,
        "tune",
        ws.configs_dir / "m.yaml",
        "--space",
        ws.configs_dir / "space.yaml",
        "--folds",
        3,
        "--folds-subset",
        "0,1",
        *args,
        barrier=barrier,
    )


def test_two_concurrent_workers_end_with_n_distinct_trials(ws):
    workers = [_tune_cli(ws, "--trials", 4, "--study", "pair") for _ in range(2)]
    results = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err for _, err in results]
    trials = _load(ws, "pair").trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.params["C"] for t in trials}) == 4  # no two workers drew the same trial
    assert len({t.user_attrs["comp_run"] for t in trials}) == 4
    out = results[0][0] + results[1][0]
    assert "best: trial" in out and "configs/m-best.yaml" not in out  # a named study writes its own
    assert (ws.configs_dir / "pair-best.yaml").is_file()
    for t in trials:  # each trial trained folds 0 and 1 of its own run, and its value is their honest CV
        run = ws.run(t.user_attrs["comp_run"])
        assert [run.fold_done(k).is_file() for k in range(3)] == [True, True, False]
        assert t.value == t.user_attrs["honest"] and sorted(t.intermediate_values) == [0, 1]


def test_kill_9_of_a_worker_leaves_the_trial_failed_and_the_study_readable(ws, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    victim = _tune_cli(ws, "--trials", 2, "--study", "killed", barrier=barrier)
    bf.wait_for(barrier / "started-0", process=victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert _load(ws, "killed").trials[0].state == TrialState.RUNNING  # as the storage was left
    shown = bf.run("--workspace", ws.root, "tune", "--show", "killed")
    assert shown.returncode == 0, shown.stderr
    assert "failed trial(s) 0: their worker died (queued again)" in shown.stdout
    study = _load(ws, "killed")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[0].user_attrs["comp_failure"] == "worker died"
    assert study.trials[1].params == study.trials[0].params  # the retry
    done = _tune_cli(ws, "--trials", 2, "--study", "killed").communicate(timeout=300)
    study = _load(ws, "killed")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE], done[1]
    # the retry trained in the killed trial's run folder, so what it had finished was kept
    assert study.trials[1].user_attrs["comp_run"] == "killed/trial-0"
    assert study.trials[1].system_attrs["failed_trial"] == 0


def test_pruning_stops_a_bad_trial_after_its_first_fold(ws):
    space = ws.configs_dir / "features.yaml"
    space.write_text("max_features: {int: [1, 5000]}\n")
    setup = setup_study(ws, ws.configs_dir / "tfidf.yaml", space, study="pruned", n_folds=3, folds_subset="0,1,2")
    study = load_study(setup, None)
    for value in (5000, 5000, 1):  # two good trials, then one with a single feature
        study.enqueue_trial({"max_features": value})
    result = tune(
        ws,
        ws.configs_dir / "tfidf.yaml",
        space,
        trials=3,
        study="pruned",
        n_folds=3,
        folds_subset="0,1,2",
        pruner_startup=2,
    )
    states = [t.state for t in _load(ws, "pruned").trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    bad = _load(ws, "pruned").trials[2]
    assert list(bad.intermediate_values) == [0]  # it reported one fold, then stopped
    run = ws.run("pruned/trial-2")
    assert run.fold_done(0).is_file() and not run.fold_done(1).exists()
    assert result.trials_run[2]["state"] == "pruned"


def test_trials_are_runs_that_can_be_reported_and_blended_and_the_best_is_retrained(ws):
    done = bf.run(
        "--workspace",
        ws.root,
        "tune",
        ws.configs_dir / "tfidf.yaml",
        "--space",
        ws.configs_dir / "space.yaml",
        "--trials",
        2,
        "--folds",
        3,
        "--retrain-best",
    )
    assert done.returncode == 0, done.stderr
    assert "retraining configs/tfidf-best.yaml on 3 folds" in done.stdout
    names = [s.name for s in list_runs(ws)]
    assert {"tfidf-tune/trial-0", "tfidf-tune/trial-1", "tfidf-best"} <= set(names)
    best = _load(ws, "tfidf-tune").best_trial
    assert load_run(ws, best.user_attrs["comp_run"]).scores["cv"]["honest"] == pytest.approx(best.value)
    blend = bf.run("--workspace", ws.root, "ensemble", "tfidf-tune/trial-0", "tfidf-tune/trial-1", "--name", "trials")
    assert blend.returncode == 0, blend.stderr
    report = bf.run("--workspace", ws.root, "report", "tfidf-tune/trial-0")
    assert report.returncode == 0, report.stderr
    view = show_study(ws, "tfidf-tune")
    assert [p.name for p in view.figures] == ["history.png", "importances.png"]
    assert all(p.stat().st_size > 1000 for p in view.figures) and view.trials_csv.is_file()
    header = (ws.configs_dir / "tfidf-best.yaml").read_text().splitlines()[0]
    assert header.startswith(f"# best trial {best.number} of study tfidf-tune")


def test_the_space_is_checked_against_the_family_before_any_trial(ws):
    config = ws.configs_dir / "tfidf.yaml"
    bad = ws.configs_dir / "bad.yaml"
    for text, message in [
        ("lr: {log_uniform: [1e-5, 1e-3]}\n", r"unknown key 'lr' for model 'tfidf'; valid keys are: C, char_ngrams"),
        ("C: {log_uniform: [0, 10]}\n", "C: a log scale needs low > 0"),
        ("C: {uniform: [0, 10]}\n", r"C = 0.0 is not a valid value .*C must be positive"),
        ("min_df: {int: [1.5, 3]}\n", "int takes integer bounds"),
        ("C: [1, 2]\n", r"C: expected one of \{log_uniform: ...\}"),
        ("seeds: {int: [1, 3]}\n", "seeds cannot be tuned"),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            setup_study(ws, config, bad, study="bad")
    assert not ws.study_dir("bad").exists()
    setup_study(ws, config, ws.configs_dir / "space.yaml", study="fixed")
    (ws.configs_dir / "other.yaml").write_text("C: {log_uniform: [1, 3]}\n")
    with pytest.raises(RunError, match="study 'fixed' exists with another space"):
        setup_study(ws, config, ws.configs_dir / "other.yaml", study="fixed")


def test_one_fold_is_scored_honestly_by_halves(ws):
    import numpy as np

    from comp.data import load_competition

    comp = load_competition(ws)
    rng = np.random.default_rng(0)
    P = rng.random(comp.Y.shape)
    folds = np.zeros(len(P), dtype=int)
    one = subset_score(P, comp.Y, folds, comp.settings)
    assert one.honest <= one.tuned and len(one.per_fold) == 2
    two = subset_score(P, comp.Y, np.where(np.arange(len(P)) < 75, 3, 5), comp.settings)  # folds 3 and 5
    assert [row["fold"] for row in two.per_fold] == [0, 1]


@pytest.fixture(autouse=True)
def _blocking(monkeypatch):
    monkeypatch.setitem(FAMILIES, "blocking", "tests.blocking_family")


def test_an_rdb_storage_and_workers_started_by_the_local_executor(ws, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    done = bf.run(
        "--workspace",
        ws.root,
        "tune",
        ws.configs_dir / "tfidf.yaml",
        "--space",
        ws.configs_dir / "space.yaml",
        "--trials",
        2,
        "--folds",
        3,
        "--folds-subset",
        "0",
        "--study",
        "fanned",
        "--storage",
        url,
        "--executor",
        "local",
        "--workers",
        2,
    )
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="fanned", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert sorted(p.name for p in (ws.study_dir("fanned") / "tasks").iterdir()) == ["worker-0.log", "worker-1.log"]
    assert not (ws.study_dir("fanned") / "study.journal").exists()
    refused = bf.run("--workspace", ws.root, "tune", "--show", "fanned")
    assert refused.returncode == 1 and "stored in an RDB; pass the same --storage URL" in refused.stderr
