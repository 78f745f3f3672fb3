"""Pseudo-labels and distillation from a teacher run: fold-safety (leak tests), the rows a student
trains on, refusals, resume, and the optimistic mark of OOF distillation."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from comp import console
from comp.cli import app
from comp.data import load_competition
from comp.errors import CompError, ConfigError, RunError
from comp.metrics import score
from comp.models.common import LinearHead, weighted_binary, weighted_classes
from comp.second_stage import Teacher, confidence, hard_labels, pseudo_targets, soften
from comp.train import ensure_folds, train
from tests.helpers import TFIDF_CONFIG, make_workspace

STUDENT = TFIDF_CONFIG  # the students are tfidf models like the teacher, plus their second stage


def _config(ws, name: str, extra: str, base: str = STUDENT) -> None:
    (ws.configs_dir / f"{name}.yaml").write_text(base + extra)


def _cli(ws, *args):
    width = console.out.width
    console.out.width = 250  # wide enough that no table column is cut
    try:
        return CliRunner().invoke(app, ["--workspace", str(ws.root), *map(str, args)])
    finally:
        console.out.width = width


def _oof(ws, name: str, classes) -> np.ndarray:
    return pd.read_parquet(ws.run(name).oof)[classes].to_numpy()


# ---- leak tests -----------------------------------------------------------------------------------


def _noisy_fold_workspace(tmp_path, noise: bool = True):
    """A workspace where fold 0's labels are noise, every fold-0 row has a near-duplicate with the
    row's real labels in another fold (a retweet), and most have one in test.csv. Near-duplicates are
    what carries a fold's labels to other rows through a teacher that trained on that fold."""
    ws = make_workspace(tmp_path, train_rows=240, test_rows=60)
    comp = load_competition(ws)
    _, folds = ensure_folds(ws, comp, 3, 42, lambda m: None)
    classes = comp.settings.label_columns
    train = pd.read_csv(ws.train_csv, dtype=str)
    test = pd.read_csv(ws.test_csv, dtype=str)
    text = comp.settings.text_columns[0]
    held = np.flatnonzero(folds == 0)
    others = np.flatnonzero(folds != 0)
    rng = np.random.default_rng(5)
    twins = rng.choice(others, size=len(held), replace=False)
    for i, j in zip(held, twins, strict=True):
        train.loc[j, text] = train.loc[i, text] + " too"
        train.loc[j, classes] = train.loc[i, classes].to_numpy()
    for n, i in enumerate(held[: len(test)]):
        test.loc[n, text] = train.loc[i, text] + " later"
    if noise:
        train.loc[held, classes] = (rng.random((len(held), len(classes))) < 0.5).astype(int).astype(str)
    train.to_csv(ws.train_csv, index=False)
    test.to_csv(ws.test_csv, index=False)
    return ws, folds == 0, classes


def _auc(ws, name, held, classes) -> float:
    Y = load_competition(ws).Y
    return float(score("roc_auc_macro", Y[held], _oof(ws, name, classes)[held], "multilabel"))


def test_fold_safe_students_score_chance_on_a_fold_of_noise_and_oof_distillation_does_not(tmp_path, monkeypatch):
    ws, held, classes = _noisy_fold_workspace(tmp_path)
    _config(ws, "teacher", "save_models: true\n")
    _config(ws, "pseudo", "pseudo_labels: {run: teacher, mode: soft, weight: 3}\n")
    _config(ws, "safe", "distill: {run: teacher, mode: fold_safe, alpha: 1.0}\n")
    _config(ws, "leaky", "distill: {run: teacher, mode: oof, alpha: 1.0}\n")
    for name in ("teacher", "pseudo", "safe", "leaky"):
        train(ws, ws.configs_dir / f"{name}.yaml", n_folds=3)
    # the teacher has learnt something where the labels are real ...
    Y = load_competition(ws).Y
    assert score("roc_auc_macro", Y[~held], _oof(ws, "teacher", classes)[~held], "multilabel") > 0.55
    # ... and the fold-safe students know nothing of fold 0's noise
    assert abs(_auc(ws, "pseudo", held, classes) - 0.5) < 0.1
    assert abs(_auc(ws, "safe", held, classes) - 0.5) < 0.1
    # the test has teeth: distilled from the teacher's OOF, the student "predicts" the noise
    assert _auc(ws, "leaky", held, classes) > 0.7
    assert json.loads(ws.run("leaky").scores.read_text())["cv_optimistic"] is True
    assert "cv_optimistic" not in json.loads(ws.run("safe").scores.read_text())
    # and so do pseudo-labels from the teacher's test predictions averaged over all folds, two of
    # whose models trained on fold 0: the fold-k model's own predictions are what keeps them honest
    averaged = pd.read_parquet(ws.run("teacher").test)[classes].to_numpy()
    monkeypatch.setattr(Teacher, "fold_test", lambda self, k: averaged)
    _config(ws, "naive", "pseudo_labels: {run: teacher, mode: soft, weight: 3}\n")
    train(ws, ws.configs_dir / "naive.yaml", n_folds=3)
    assert _auc(ws, "naive", held, classes) > 0.7


def test_a_fold_safe_students_fold_oof_does_not_depend_on_that_folds_labels(tmp_path):
    """Stronger than chance: fold 0's OOF is the same array whether its labels are noise or real."""
    arrays = {}
    for noise in (True, False):
        ws, held, classes = _noisy_fold_workspace(tmp_path / str(noise), noise=noise)
        _config(ws, "teacher", "save_models: true\n")
        _config(ws, "student", "pseudo_labels: {run: teacher, mode: hard}\ndistill: {run: teacher, alpha: 0.5}\n")
        _config(ws, "leaky", "distill: {run: teacher, mode: oof, alpha: 0.5}\n")
        for name in ("teacher", "student", "leaky"):
            train(ws, ws.configs_dir / f"{name}.yaml", n_folds=3)
        arrays[noise] = {name: _oof(ws, name, classes)[held] for name in ("student", "leaky")}
    np.testing.assert_array_equal(arrays[True]["student"], arrays[False]["student"])
    assert not np.allclose(arrays[True]["leaky"], arrays[False]["leaky"], atol=1e-3)


# ---- what a student trains on ---------------------------------------------------------------------


def test_pseudo_rows_are_used_counted_and_change_the_student(tmp_path):
    ws = make_workspace(tmp_path, train_rows=150, test_rows=60)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    _config(ws, "plain", "")
    _config(ws, "soft", "pseudo_labels: {run: tfidf, weight: 0.5}\n")
    _config(ws, "hard", "pseudo_labels: {run: tfidf, mode: hard, min_confidence: 0.8}\n")
    for name in ("plain", "soft", "hard"):
        train(ws, ws.configs_dir / f"{name}.yaml", n_folds=3)
    classes = load_competition(ws).settings.label_columns
    np.testing.assert_array_equal(_oof(ws, "plain", classes), _oof(ws, "tfidf", classes))
    assert not np.allclose(_oof(ws, "soft", classes), _oof(ws, "plain", classes), atol=1e-4)
    for k in range(3):
        done = json.loads((ws.run("soft").fold_dir(k) / "done.json").read_text())
        assert done["pseudo_rows"] == 60 and done["pseudo_dropped"] == 0
        kept = int((confidence(np.load(ws.run("tfidf").fold_test(k)), "multilabel") >= 0.8).sum())
        done = json.loads((ws.run("hard").fold_dir(k) / "done.json").read_text())
        assert done["pseudo_rows"] == kept and done["pseudo_dropped"] == 60 - kept
    log = ws.run("hard").log.read_text()
    assert "fold 2: + " in log and "below min_confidence 0.8 left out" in log
    record = ws.run("soft").run_yaml.read_text()
    assert "second_stage:" in record and "pseudo_labels:" in record and "outputs:" in record


def test_extra_csv_is_labelled_by_the_teachers_saved_fold_models(tmp_path):
    ws = make_workspace(tmp_path, train_rows=150, test_rows=40)
    _config(ws, "teacher", "save_models: true\n")
    train(ws, ws.configs_dir / "teacher.yaml", n_folds=3)
    texts = ["happy love great day", "angry hate this bus", "so sad and lonely tonight", "scared of the dark"] * 5
    pd.DataFrame({"ID": [f"x{i}" for i in range(len(texts))], "Tweet": texts}).to_csv(
        ws.data_dir / "extra.csv", index=False
    )
    _config(ws, "student", "pseudo_labels: {run: teacher, test: false, extra: data/extra.csv}\n")
    train(ws, ws.configs_dir / "student.yaml", n_folds=3)
    done = json.loads((ws.run("student").fold_dir(1) / "done.json").read_text())
    assert done["pseudo_rows"] == len(texts)
    assert "teacher 'teacher' fold-1 model predicts 20 extra rows" in ws.run("student").log.read_text()
    # the extra file is part of what the student was trained on
    pd.DataFrame({"ID": ["y"], "Tweet": ["other"]}).to_csv(ws.data_dir / "extra.csv", index=False)
    with pytest.raises(RunError, match=r"pseudo_labels teacher 'teacher' as it was then; its extra changed"):
        train(ws, ws.configs_dir / "student.yaml", n_folds=3)


def test_a_student_with_seeds_asks_the_teacher_once_per_fold(tmp_path):
    ws = make_workspace(tmp_path, train_rows=120, test_rows=30)
    _config(ws, "teacher", "save_models: true\nseeds: 2\n")
    train(ws, ws.configs_dir / "teacher.yaml", n_folds=3)
    _config(ws, "student", "seeds: 2\ndistill: {run: teacher, alpha: 0.5}\npseudo_labels: {run: teacher}\n")
    result = train(ws, ws.configs_dir / "student.yaml", n_folds=3)
    assert result.scores is not None
    log = ws.run("student").log.read_text()
    assert log.count("teacher 'teacher' fold-0 model predicts 80 training rows") == 1  # not once per seed
    assert log.count("fold 0: + 30 pseudo-labelled rows") == 2
    # the teacher's fold test predictions are the mean of its two seeds
    paths = ws.run("teacher")
    mean = (np.load(paths.seed_dir(0, 0) / "test.npy") + np.load(paths.seed_dir(0, 1) / "test.npy")) / 2
    np.testing.assert_allclose(np.load(paths.fold_test(0)), mean, atol=1e-12)


def test_multiclass_students_with_soft_targets(tmp_path):
    ws = make_workspace(tmp_path, "multiclass", train_rows=150, test_rows=45)
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\nword_ngrams: [1, 2]\nsave_models: true\n")
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=3)
    _config(ws, "student", "pseudo_labels: {run: nbsvm}\ndistill: {run: nbsvm, temperature: 2.0, alpha: 0.3}\n")
    (ws.configs_dir / "nb-student.yaml").write_text(
        "model: nbsvm\nword_ngrams: [1, 2]\npseudo_labels: {run: tfidf, weight: 0.3}\n"
    )
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    for name in ("student", "nb-student"):
        result = train(ws, ws.configs_dir / f"{name}.yaml", n_folds=3)
        assert result.scores.honest > 0.5  # three well-separated classes: far above chance (~0.33)
        oof = pd.read_parquet(ws.run(name).oof)[["0", "1", "2"]].to_numpy()
        np.testing.assert_allclose(oof.sum(axis=1), 1.0, atol=1e-6)


# ---- refusals ---------------------------------------------------------------------------------------


@pytest.fixture()
def teacher_ws(tmp_path):
    ws = make_workspace(tmp_path, train_rows=120, test_rows=30)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    return ws


@pytest.mark.parametrize(
    "extra, message",
    [
        ("pseudo_labels: {run: nobody}", r"pseudo_labels.run: teacher no run 'nobody'"),
        ("pseudo_labels: {run: student}", r"pseudo_labels.run: 'student' is this run itself"),
        (
            "distill: {run: tfidf}",
            r"distill.run: distill mode fold_safe .* saved fold models of teacher run 'tfidf'.*"
            r"save_models=true",
        ),
        ("pseudo_labels: {run: tfidf, extra: data/extra.csv}", r"pseudo_labels.extra: data/extra.csv not found"),
        ("pseudo_labels: {run: tfidf, min_confidence: 2}", r"min_confidence must be within \[0, 1\]"),
        ("distill: {run: tfidf, alpha: -1}", r"alpha must be within \[0, 1\]"),
        ("distill: {run: tfidf, mode: nested}", r"mode: 'nested' is not one of fold_safe, oof"),
    ],
)
def test_bad_teachers_are_refused_in_one_line_before_anything_is_written(teacher_ws, extra, message):
    ws = teacher_ws
    _config(ws, "student", extra + "\n")
    result = _cli(ws, "train", ws.configs_dir / "student.yaml", "--folds", "3")
    # a CompError: `comp` prints it as one line and exits 1 (comp.cli.main)
    assert result.exit_code != 0 and isinstance(result.exception, CompError)
    text = str(result.exception)
    assert "\n" not in text and re.search(message, text), text
    assert text.startswith(str(ws.configs_dir / "student.yaml"))  # the file to fix
    assert not ws.run("student").dir.exists()


def test_teachers_on_other_folds_unfinished_stale_or_ensembles_are_refused(teacher_ws):
    ws = teacher_ws
    _config(ws, "student", "pseudo_labels: {run: tfidf}\n")
    with pytest.raises(
        ConfigError,
        match=r"teacher run 'tfidf' was trained on data/folds-k3-s42.csv .* not on this "
        r"run's data/folds-k4-s42.csv",
    ):
        train(ws, ws.configs_dir / "student.yaml", n_folds=4)
    assert not ws.folds_csv(4, 42).exists()  # refused before the fold file was made
    _config(ws, "half", "")
    train(ws, ws.configs_dir / "half.yaml", n_folds=3, only_fold=0)
    _config(ws, "student", "pseudo_labels: {run: half}\n")
    with pytest.raises(ConfigError, match=r"teacher run 'half' is not finished"):
        train(ws, ws.configs_dir / "student.yaml", n_folds=3)
    (ws.configs_dir / "nbsvm.yaml").write_text("model: nbsvm\n")
    train(ws, ws.configs_dir / "nbsvm.yaml", n_folds=3)
    from comp.ensemble import make_ensemble

    make_ensemble(ws, ["tfidf", "nbsvm"], "blend")
    _config(ws, "student", "pseudo_labels: {run: blend}\n")
    with pytest.raises(ConfigError, match=r"teacher run 'blend' is an ensemble: it has no fold models"):
        train(ws, ws.configs_dir / "student.yaml", n_folds=3)
    _config(ws, "student", "distill: {run: blend, mode: oof}\n")
    train(ws, ws.configs_dir / "student.yaml", n_folds=3)  # OOF mode takes any finished run
    frame = pd.read_csv(ws.train_csv, dtype=str)
    frame.loc[0, "Tweet"] = "changed text"
    frame.to_csv(ws.train_csv, index=False)
    _config(ws, "student", "pseudo_labels: {run: tfidf}\n")
    with pytest.raises(ConfigError, match=r"teacher run 'tfidf' was trained on other data: train.csv texts changed"):
        train(ws, ws.configs_dir / "student.yaml", n_folds=3, name="fresh")


# ---- resume and a changed teacher -------------------------------------------------------------------


def test_resume_gives_the_bytes_of_an_uninterrupted_run_and_a_retrained_teacher_is_refused(teacher_ws):
    ws = teacher_ws
    _config(ws, "student", "pseudo_labels: {run: tfidf, weight: 0.5}\n")
    train(ws, ws.configs_dir / "student.yaml", n_folds=3, name="whole")
    train(ws, ws.configs_dir / "student.yaml", n_folds=3, only_fold=1, name="parts")
    result = train(ws, ws.configs_dir / "student.yaml", n_folds=3, name="parts")
    assert result.skipped == [1] and result.trained == [0, 2]
    assert ws.run("parts").oof.read_bytes() == ws.run("whole").oof.read_bytes()
    assert ws.run("parts").test.read_bytes() == ws.run("whole").test.read_bytes()

    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, overrides=["C=8"], force=True)  # the teacher changes
    from comp.runs import list_runs

    status = {s.name: s.status for s in list_runs(ws)}
    assert status["whole"] == "stale: teacher tfidf changed"
    with pytest.raises(
        RunError,
        match=r"run 'whole' was trained from pseudo_labels teacher 'tfidf' as it was then; "
        r"its digest, outputs changed since; pass --force",
    ):
        train(ws, ws.configs_dir / "student.yaml", n_folds=3, name="whole")
    train(ws, ws.configs_dir / "student.yaml", n_folds=3, name="whole", force=True)
    assert {s.name: s.status for s in list_runs(ws)}["whole"] == "done"


def test_oof_distillation_is_marked_optimistic_everywhere_it_shows(teacher_ws):
    ws = teacher_ws
    _config(ws, "oofd", "distill: {run: tfidf, mode: oof, alpha: 0.8, temperature: 2}\n")
    result = _cli(ws, "train", ws.configs_dir / "oofd.yaml", "--folds", "3")
    assert result.exit_code == 0, result.output
    assert "cv optimistic: distilled from the OOF predictions of teacher 'tfidf'" in " ".join(result.output.split())
    assert "cv_optimistic: true" in ws.run("oofd").run_yaml.read_text()
    assert "done, cv optimistic" in _cli(ws, "runs").output
    report = _cli(ws, "report", "oofd")
    assert "cv optimistic: distilled from the OOF" in " ".join(report.output.split())
    from comp.ensemble import make_ensemble

    make_ensemble(ws, ["tfidf", "oofd"], "blend")
    scores = json.loads(ws.run("blend").scores.read_text())
    assert scores["cv_optimistic"] is True and "member 'oofd'" in scores["cv_optimistic_reason"]
    # a student of an optimistic teacher inherits the mark
    _config(ws, "grandchild", "pseudo_labels: {run: oofd}\n")
    result = train(ws, ws.configs_dir / "grandchild.yaml", n_folds=3)
    assert result.optimistic.startswith("its pseudo-label teacher 'oofd' has an optimistic CV")


# ---- the pure parts -------------------------------------------------------------------------------


def test_soften_keeps_order_sums_and_the_identity_at_one():
    P = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]])
    np.testing.assert_array_equal(soften(P, "multiclass", 1.0), P)
    hot = soften(P, "multiclass", 3.0)
    np.testing.assert_allclose(hot.sum(axis=1), 1.0)
    assert (hot.argmax(1) == P.argmax(1)).all() and hot.max() < P.max()
    np.testing.assert_allclose(soften(P, "multiclass", 0.5)[0], P[0] ** 2 / (P[0] ** 2).sum())
    q = soften(np.array([[0.9, 0.5, 0.2]]), "multilabel", 2.0)[0]
    np.testing.assert_allclose(q, [0.75, 0.5, 1 / (1 + 2.0)], atol=1e-9)  # sqrt of the odds


def test_confidence_and_hard_labels():
    P = np.array([[0.9, 0.05], [0.6, 0.97]])
    np.testing.assert_allclose(confidence(P, "multilabel"), [0.9, 0.6])
    np.testing.assert_array_equal(hard_labels(P, "multilabel"), [[1, 0], [1, 1]])
    keep, targets = pseudo_targets(P, "multilabel", "soft", 0.8)
    assert keep.tolist() == [True, False] and targets.tolist() == [[0.9, 0.05]]
    np.testing.assert_array_equal(hard_labels(np.array([[0.2, 0.5, 0.3]]), "multiclass"), [[0, 1, 0]])


def test_weighted_copies_fit_the_soft_target_cross_entropy():
    """An intercept-only logistic regression on the weighted copies predicts the weighted mean target,
    the minimiser of the soft cross-entropy; hard targets with unit weights change nothing."""
    t = np.array([0.9, 0.2, 1.0, 0.0, 0.6])
    w = np.array([1.0, 2.0, 1.0, 1.0, 0.5])
    idx, y, weight = weighted_binary(t, w)
    assert len(idx) == 8 and weight.sum() == pytest.approx(w.sum())
    X = np.ones((5, 1))
    head = LinearHead("binary", C=1e6, class_weight="none").fit(X, t[:, None], w)
    assert head.predict_proba(X[:1])[0, 0] == pytest.approx(np.average(t, weights=w), abs=1e-3)
    rows, classes, cw = weighted_classes(np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]), np.array([1.0, 2.0]))
    assert rows.tolist() == [0, 0, 1] and classes.tolist() == [0, 1, 2] and cw.tolist() == [0.5, 0.5, 2.0]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    Y = (X[:, :2] > 0).astype(int)
    np.testing.assert_allclose(
        LinearHead("multilabel").fit(X, Y, np.ones(80)).predict_proba(X),
        LinearHead("multilabel").fit(X, Y).predict_proba(X),
        atol=1e-8,
    )


def test_a_family_without_sample_weight_is_refused(teacher_ws, monkeypatch):
    from comp.models import tfidf

    monkeypatch.setattr(tfidf.Model, "fit", lambda self, texts, Y, valid=None: self)
    _config(teacher_ws, "student", "pseudo_labels: {run: tfidf}\n")
    with pytest.raises(CompError, match=r"model 'tfidf' cannot train on weighted soft targets"):
        train(teacher_ws, teacher_ws.configs_dir / "student.yaml", n_folds=3)
