"""A run records what it was trained and predicted on (run.yaml ``data:``) and is refused by name once
that changed: resume, submit, ensemble, thresholds, report, compare."""

import re
import shutil

import pandas as pd
import pytest
import yaml

from comp.data import load_competition
from comp.ensemble import make_ensemble
from comp.errors import RunError
from comp.fetch import fetch_local
from comp.fingerprint import data_changes, data_fingerprint
from comp.report import write_run_report
from comp.runs import list_runs, load_run, rescore_run
from comp.submission import submit_run
from comp.train import train
from tests.helpers import make_workspace

STALE = (
    r"run 'tfidf' was trained on other data: {what} changed since \d{{4}}-\d\d-\d\dT[\d:]+; "
    r"retrain with --force or --name NEW"
)


@pytest.fixture
def ws(tmp_path):
    ws = make_workspace(tmp_path)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    return ws


def _refetch(ws, tmp_path, change) -> None:
    """Change the competition files and install them as `comp fetch --force` would."""
    source = tmp_path / "changed"
    shutil.copytree(tmp_path / "download", source)
    change(source)
    fetch_local(ws, source, force=True)


def _flip_label(source):
    frame = pd.read_csv(source / "train.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "joy"] = "1" if frame.loc[0, "joy"] == "0" else "0"
    frame.to_csv(source / "train.csv", index=False)


def _shuffle_test_texts(source):
    frame = pd.read_csv(source / "test.csv", dtype=str, keep_default_na=False)
    frame["Tweet"] = frame["Tweet"].sample(frac=1.0, random_state=0).to_numpy()
    frame.to_csv(source / "test.csv", index=False)


def test_run_yaml_records_the_data(ws):
    record = yaml.safe_load(ws.run("tfidf").run_yaml.read_text())
    data = record["data"]
    assert data["columns"]["text"] == ["Tweet"] and data["columns"]["labels"][0] == "joy"
    assert data["train"]["rows"] == 300 and data["test"]["rows"] == 100
    assert all(len(data["train"][k]) == 64 for k in ("ids", "texts", "labels"))
    assert re.fullmatch(r"[0-9a-f]{16}", record["digest"])


def test_a_flipped_label_stops_resume_and_every_reader(ws, tmp_path):
    _refetch(ws, tmp_path, _flip_label)
    message = STALE.format(what="train.csv labels")
    with pytest.raises(RunError, match=message):  # today: every fold skipped, old OOF re-scored on new labels
        train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    for read in (
        lambda: submit_run(ws, "tfidf", dry_run=True),
        lambda: rescore_run(ws, "tfidf"),
        lambda: write_run_report(ws, "tfidf"),
        lambda: load_run(ws, "tfidf"),
    ):
        with pytest.raises(RunError, match=message):
            read()
    [summary] = list_runs(ws)
    assert summary.status == "stale: train.csv labels changed"
    assert not list(ws.submissions_dir.glob("*.csv"))
    result = train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, force=True)
    assert result.trained == [0, 1, 2]
    assert load_run(ws, "tfidf").scores["cv"]["tuned"] == result.scores.tuned


def test_shuffled_test_texts_with_the_same_ids_are_refused_at_submit(ws, tmp_path):
    _refetch(ws, tmp_path, _shuffle_test_texts)
    with pytest.raises(RunError, match=STALE.format(what="test.csv texts")):
        submit_run(ws, "tfidf", dry_run=True)
    assert not list(ws.submissions_dir.glob("*.csv")) and not ws.ledger_path.exists()


def test_an_ensemble_of_a_stale_member_is_refused_and_an_ensemble_records_the_data(ws, tmp_path):
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, overrides=["C=1"], name="tfidf-c1")
    make_ensemble(ws, ["tfidf", "tfidf-c1"], "blend")
    assert (
        yaml.safe_load(ws.run("blend").run_yaml.read_text())["data"]
        == yaml.safe_load(ws.run("tfidf").run_yaml.read_text())["data"]
    )
    _refetch(ws, tmp_path, _flip_label)
    with pytest.raises(RunError, match=STALE.format(what="train.csv labels")):
        make_ensemble(ws, ["tfidf", "tfidf-c1"], "blend2")
    with pytest.raises(RunError, match=r"run 'blend' was trained on other data: train.csv labels changed"):
        submit_run(ws, "blend", dry_run=True)


def test_row_order_is_not_a_change_but_columns_are(ws):
    comp = load_competition(ws)
    before = data_fingerprint(comp, "t")
    train_csv = ws.train_csv
    frame = pd.read_csv(train_csv, dtype=str, keep_default_na=False)
    frame.iloc[::-1].to_csv(train_csv, index=False)
    assert data_changes(before, data_fingerprint(load_competition(ws), "t")) == []
    settings = ws.load_settings()
    settings.text_separator = " | "
    settings.text_columns = ["Tweet", "ID"]
    ws.save_settings(settings)
    assert data_changes(before, data_fingerprint(load_competition(ws), "t")) == [
        "comp.yaml's text_columns",
        "comp.yaml's text_separator",
        "train.csv texts",
        "test.csv texts",
    ]


def test_changed_text_columns_stop_a_resume(ws):
    settings = ws.load_settings()
    settings.text_columns = ["Tweet", "ID"]
    ws.save_settings(settings)
    with pytest.raises(
        RunError,
        match=r"run 'tfidf' was trained on other data: comp.yaml's text_columns, "
        r"train.csv texts, test.csv texts changed since",
    ):
        train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)


def test_a_run_without_a_fingerprint_is_refused(ws):
    paths = ws.run("tfidf")
    record = yaml.safe_load(paths.run_yaml.read_text())
    del record["data"]
    paths.run_yaml.write_text(yaml.safe_dump(record))
    with pytest.raises(RunError, match=r"run 'tfidf' records no data fingerprint \(it was made by an older comp\)"):
        submit_run(ws, "tfidf", dry_run=True)
    with pytest.raises(RunError, match=r"records no data fingerprint .*retrain with --force or --name NEW"):
        train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
