"""The bad-input battery: each case is one mistake a user makes (in comp.yaml, a config, a `--set`, a
command-line option, a damaged file), run through the `comp` command line. Every one must end with
exit code 1 and one line on stderr that names the file, key or value and says what to do: no
traceback, and nothing half-written. The messages are pinned.

A case is (id, setup, args, message): ``setup(ws)`` damages a copy of a workspace that holds one
finished tfidf run; ``args(ws)`` are the command's arguments.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from comp import cli, console
from comp.train import train
from tests.helpers import TFIDF_CONFIG, make_workspace

RUN = "tfidf"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workspace (120 train rows) with the run 'tfidf' trained on 3 folds, made once for the module."""
    root = tmp_path_factory.mktemp("trained")
    ws = make_workspace(root, train_rows=120, test_rows=40)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    return ws


@pytest.fixture
def ws(trained, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(trained.root, copy)
    return type(trained)(copy)


def comp_yaml(**changes):
    def setup(ws):
        raw = yaml.safe_load(ws.settings_path.read_text())
        raw.update(changes)
        ws.settings_path.write_text(yaml.safe_dump(raw))

    return setup


def config_file(text):
    def setup(ws):
        (ws.configs_dir / "bad.yaml").write_text(text)

    return setup


def edit_run_file(name, change):
    def setup(ws):
        change(ws.run(RUN).dir / name)

    return setup


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def set_test_value(value):
    def change(path):
        frame = pd.read_parquet(path)
        frame.loc[3, "anger"] = value
        frame.to_parquet(path, index=False)

    return change


def fold_file(change):
    def setup(ws):
        path = ws.data_dir / "folds-k3-s42.csv"
        frame = pd.read_csv(path, dtype=str)
        change(frame)
        frame.to_csv(path, index=False)
        shutil.rmtree(ws.runs_dir)  # a new run trains on the damaged fold file

    return setup


def chmod_readonly(folder):
    def setup(ws):
        target = ws.root / folder
        target.mkdir(exist_ok=True)
        for path in [target, *target.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)

    return setup


def nothing(ws):
    pass


def train_args(*extra, config="tfidf.yaml"):
    return lambda ws: ["train", ws.configs_dir / config, "--folds", "3", *extra]


def write_json_text(text):
    return lambda path: path.write_text(text)


def sample_values(value, **settings):
    def setup(ws):
        frame = pd.read_csv(ws.sample_submission_csv, dtype=str)
        for column in frame.columns[1:]:
            frame[column] = value
        frame.iloc[0, 1] = "1"
        frame.to_csv(ws.sample_submission_csv, index=False)
        comp_yaml(**settings)(ws)

    return setup


T = r"^error: "  # every message starts so, and is one line
CASES = [
    # ---- comp.yaml, checked when it is read ------------------------------------------------------
    (
        "yaml-text-columns-int",
        comp_yaml(text_columns=5),
        lambda ws: ["info"],
        r"comp.yaml: text_columns must be a list of column names \(e.g. text_columns: \[Tweet\]\), got 5",
    ),
    (
        "yaml-separator-null",
        comp_yaml(text_columns=["Tweet", "ID"], text_separator=None),
        lambda ws: ["info"],
        r"comp.yaml: text_separator is null but the 2 text_columns are joined with it; set text_separator",
    ),
    (
        "yaml-separator-int",
        comp_yaml(text_separator=3),
        lambda ws: ["info"],
        r"comp.yaml: text_separator must be a string",
    ),
    (
        "yaml-min-labels-negative",
        comp_yaml(min_labels=-3),
        train_args(),
        r"comp.yaml: min_labels must be 0 or more \(labels every row gets at least\), got -3",
    ),
    (
        "yaml-min-labels-too-many",
        comp_yaml(min_labels=9),
        train_args(),
        r"comp.yaml: min_labels is 9 but there are only 6 label columns",
    ),
    ("yaml-folds-one", comp_yaml(folds=1), lambda ws: ["folds"], r"comp.yaml: folds must be at least 2, got 1"),
    (
        "yaml-seed-negative",
        comp_yaml(seed=-1),
        lambda ws: ["folds"],
        r"comp.yaml: seed must be between 0 and 2\*\*32 - 1, got -1",
    ),
    (
        "yaml-metric-unknown",
        comp_yaml(metric="f2"),
        lambda ws: ["info"],
        r"comp.yaml: metric 'f2' is unknown; choose one of",
    ),
    (
        "yaml-task-unknown",
        comp_yaml(task="regression"),
        lambda ws: ["info"],
        r"comp.yaml: task 'regression' is not one of multilabel, multiclass, binary",
    ),
    (
        "yaml-format-unknown",
        comp_yaml(submission_format="csv"),
        lambda ws: ["info"],
        r"comp.yaml: submission_format 'csv' is not one of labels, probabilities",
    ),
    (
        "yaml-unknown-key",
        comp_yaml(treshold=0.5),
        lambda ws: ["info"],
        r"comp.yaml: unknown key\(s\) treshold; valid keys are",
    ),
    (
        "yaml-id-column-int",
        comp_yaml(id_column=5),
        lambda ws: ["info"],
        r"comp.yaml: id_column must be a column name, got 5",
    ),
    (
        "yaml-allow-empty-string",
        comp_yaml(allow_empty_text="yes"),
        lambda ws: ["info"],
        r"comp.yaml: allow_empty_text must be true or false, got 'yes'",
    ),
    (
        "yaml-not-yaml",
        lambda ws: ws.settings_path.write_text("task: [unclosed\n"),
        lambda ws: ["info"],
        r"comp.yaml is not valid YAML",
    ),
    # ---- command-line options ---------------------------------------------------------------------
    (
        "train-folds-zero",
        nothing,
        lambda ws: ["train", ws.configs_dir / "tfidf.yaml", "--folds", "0"],
        r"--folds 0: need at least 2 folds \(leave --folds out to use comp.yaml's 5\)",
    ),
    ("folds-folds-negative", nothing, lambda ws: ["folds", "--folds", "-2"], r"--folds -2: need at least 2 folds"),
    ("train-fold-out-of-range", nothing, train_args("--fold", "7"), r"--fold 7 is out of range: folds are 0..2"),
    ("train-name-invalid", nothing, train_args("--name", "a b"), r"run name 'a b' is not allowed"),
    ("set-not-key-value", nothing, train_args("--set", "C"), r"--set 'C' is not of the form key=value"),
    (
        "set-unknown-key",
        nothing,
        train_args("--set", "ngrams=2", "--name", "x"),
        r"unknown key\(s\) ngrams; valid keys are",
    ),
    (
        "predict-out-json",
        nothing,
        lambda ws: ["predict", RUN, "--test", ws.test_csv, "--out", ws.root / "p.json"],
        r"--out .*p.json: comp predict writes .csv or .parquet files; name the file x.csv or x.parquet",
    ),
    (
        "report-out-is-a-file",
        lambda ws: (ws.root / "r.html").write_text("x"),
        lambda ws: ["report", RUN, "--out", ws.root / "r.html"],
        r"--out .*r.html is a file; pass a folder \(the report writes report.html and its figures into it\)",
    ),
    (
        "compare-out-is-a-file",
        lambda ws: (ws.root / "c.html").write_text("x"),
        lambda ws: ["compare", RUN, RUN, "--out", ws.root / "c.html"],
        r"--out .*c.html is a file; pass a folder",
    ),
    # ---- values a library would reject: checked before any fold starts ---------------------------
    (
        "set-max-iter-negative",
        nothing,
        train_args("--set", "max_iter=-5", "--name", "x"),
        r"tfidf.yaml: max_iter: -5 is rejected by scikit-learn \(The 'max_iter' parameter of LogisticRegression must "
        r"be an int in the range \[0, inf\). Got -5 instead.\); fix max_iter",
    ),
    (
        "set-min-df-zero",
        nothing,
        train_args("--set", "min_df=0", "--name", "x"),
        r"tfidf.yaml: min_df: 0 is rejected by scikit-learn \(The 'min_df' parameter of TfidfVectorizer",
    ),
    (
        "set-max-df-above-one",
        nothing,
        train_args("--set", "max_df=1.5", "--name", "x"),
        r"tfidf.yaml: max_df: 1.5 is rejected by scikit-learn .*Got 1.5 instead.\); fix max_df",
    ),
    (
        "set-strip-accents",
        nothing,
        train_args("--set", "strip_accents=greek", "--name", "x"),
        r"tfidf.yaml: strip_accents: 'greek' is rejected by scikit-learn \(The 'strip_accents' parameter",
    ),
    (
        "set-max-features-zero",
        nothing,
        train_args("--set", "max_features=0", "--name", "x"),
        r"tfidf.yaml: max_features: 0 is rejected by scikit-learn",
    ),
    (
        "set-max-df-below-min-df",
        nothing,
        train_args("--set", "max_df=1", "--set", "min_df=2", "--name", "x"),
        r"tfidf.yaml: max_df 1 is below min_df 2: no n-gram can pass both; raise max_df",
    ),
    ("set-c-zero", nothing, train_args("--set", "C=0", "--name", "x"), r"tfidf.yaml: C must be positive, got 0.0"),
    (
        "set-n-jobs-zero",
        nothing,
        train_args("--set", "n_jobs=0", "--name", "x"),
        r"tfidf.yaml: n_jobs must be a number of processes \(1, 2, ...\) or -1 for all cores, got 0",
    ),
    (
        "set-ngrams-reversed",
        nothing,
        train_args("--set", "word_ngrams=[3,1]", "--name", "x"),
        r"word_ngrams must be \[min, max\] with 1 <= min <= max, got \[3, 1\]",
    ),
    (
        "nbsvm-max-iter",
        config_file("model: nbsvm\nmax_iter: -1\n"),
        train_args(config="bad.yaml"),
        r"bad.yaml: max_iter: -1 is rejected by scikit-learn",
    ),
    (
        "model-decoders",
        config_file("model: decoders\n"),
        train_args(config="bad.yaml"),
        r"bad.yaml: unknown model 'decoders'; available models are: embeddings, generative, nbsvm, prompt, tfidf, "
        r"transformer",
    ),
    (
        "embeddings-backbone-missing",
        config_file("model: embeddings\nbackbone: /no/such/encoder\n"),
        train_args(config="bad.yaml"),
        r"bad.yaml: backbone '/no/such/encoder' cannot be loaded",
    ),
    (
        "embeddings-fp16-on-cpu",
        config_file("model: embeddings\nbackbone: /no/such/encoder\ndevice: cpu\nprecision: fp16\n"),
        train_args(config="bad.yaml"),
        r"bad.yaml: precision: fp16 needs a CUDA GPU; use precision: fp32 \(or bf16\) on CPU",
    ),
    # ---- fold files ---------------------------------------------------------------------------------
    (
        "fold-file-missing-fold",
        fold_file(lambda f: f.__setitem__("fold", f["fold"].replace("2", "1"))),
        train_args(),
        r"folds-k3-s42.csv holds folds 0, 1, not 0..2; recreate it with `comp folds --folds 3 --force`",
    ),
    (
        "fold-file-other-k",
        fold_file(lambda f: f.__setitem__("fold", (np.arange(len(f)) % 5).astype(str))),
        train_args(),
        r"folds-k3-s42.csv holds folds 0, 1, 2, 3, 4, not 0..2; recreate it with `comp folds --folds 3 --force`",
    ),
    (
        "fold-file-not-integer",
        fold_file(lambda f: f.__setitem__("fold", "x")),
        train_args(),
        r"folds-k3-s42.csv has a non-integer fold value; recreate it",
    ),
    # ---- damaged run files -------------------------------------------------------------------------
    (
        "run-yaml-garbage",
        edit_run_file("run.yaml", write_json_text("name: [tfidf\n")),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"runs/tfidf/run.yaml is damaged \(.*\); re-run `comp train CONFIG`",
    ),
    (
        "oof-parquet-truncated",
        edit_run_file("oof.parquet", truncate),
        lambda ws: ["report", RUN],
        r"runs/tfidf/oof.parquet is damaged \(.*\); re-run `comp train .*tfidf.yaml` \(with --name tfidf",
    ),
    (
        "test-parquet-truncated",
        edit_run_file("test.parquet", truncate),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"runs/tfidf/test.parquet is damaged",
    ),
    (
        "thresholds-truncated",
        edit_run_file("thresholds.json", truncate),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"runs/tfidf/thresholds.json is damaged \(.*\); re-fit it with `comp thresholds tfidf`",
    ),
    (
        "thresholds-missing",
        edit_run_file("thresholds.json", lambda p: p.unlink()),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"runs/tfidf/thresholds.json is missing, so the labels cannot be decided as the run's CV was measured; "
        r"re-fit it with `comp thresholds tfidf`",
    ),
    (
        "thresholds-nan",
        edit_run_file(
            "thresholds.json",
            lambda p: p.write_text(
                json.dumps(
                    {
                        **json.loads(p.read_text()),
                        "metric": "log_loss",
                        "thresholds": {k: None for k in json.loads(p.read_text())["thresholds"]},
                    }
                )
            ),
        ),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"thresholds.json has no tuned threshold for class\(es\) joy, .* \(fitted for metric log_loss, which scores "
        r"probabilities\); re-fit them for the competition's metric with `comp thresholds tfidf --metric f1_macro`",
    ),
    (
        "scores-truncated",
        edit_run_file("scores.json", truncate),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"runs/tfidf/scores.json is damaged",
    ),
    (
        "test-probability-nan",
        edit_run_file("test.parquet", set_test_value(np.nan)),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"runs/tfidf/test.parquet has NaN or infinite values in column 'anger' \(1 row\(s\): nan; ids .*\); nothing "
        r"can "
        r"be submitted or blended from it",
    ),
    (
        "test-probability-above-one",
        edit_run_file("test.parquet", set_test_value(7.5)),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"runs/tfidf/test.parquet has probabilities outside \[0, 1\] in column 'anger' \(1 row\(s\): 7.5; ids",
    ),
    (
        "test-probability-negative",
        edit_run_file("test.parquet", set_test_value(-2.0)),
        lambda ws: ["ensemble", RUN, RUN + "2", "--name", "b"],
        r"test.parquet has probabilities outside \[0, 1\] in column 'anger' \(1 row\(s\): -2",
    ),
    # ---- submissions of the wrong value kind --------------------------------------------------------
    (
        "format-probabilities-for-f1",
        comp_yaml(submission_format="probabilities"),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"the submission would hold the wrong kind of values, nothing was written or uploaded: metric f1_macro scores "
        r"labels but submission_format is probabilities, so the file would hold probabilities; set submission_format: "
        r"labels in comp.yaml \(or pass --force to submit it anyway\)",
    ),
    (
        "metric-auc-with-labels",
        comp_yaml(metric="roc_auc_macro"),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"metric roc_auc_macro scores probabilities but submission_format is labels, so the file would hold labels; "
        r"set submission_format: probabilities in comp.yaml",
    ),
    (
        "sample-holds-probabilities",
        sample_values("0.5"),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"sample_submission.csv holds probabilities \(1, 0.5\) but the file would hold labels; set submission_format: "
        r"probabilities in comp.yaml",
    ),
    (
        "sample-holds-labels-for-auc",
        sample_values("0", metric="roc_auc_macro", submission_format="probabilities"),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"wrong kind of values, nothing was written or uploaded: sample_submission.csv holds labels \(1, 0\) but the "
        r"file would hold probabilities; set submission_format: labels in comp.yaml",
    ),
    # ---- read-only folders --------------------------------------------------------------------------
    (
        "runs-read-only",
        chmod_readonly("runs"),
        train_args("--name", "other"),
        r"cannot (write|create the lock) .*runs/other.*: permission denied; make the folder writable",
    ),
    (
        "submissions-read-only",
        chmod_readonly("submissions"),
        lambda ws: ["submit", RUN, "--dry-run"],
        r"submissions/ledger.db.*(writable|read-only)",
    ),
]
# the two runs an ensemble case needs: 'tfidf2' is a copy of 'tfidf' (same data, same folds)
_NEEDS_SECOND_RUN = {"test-probability-negative"}


@pytest.mark.parametrize(("case", "setup", "args", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(ws, monkeypatch, capsys, case, setup, args, message):
    if case in _NEEDS_SECOND_RUN:
        shutil.copytree(ws.run(RUN).dir, ws.runs_dir / (RUN + "2"))
    if case.endswith("read-only"):
        import os

        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
    setup(ws)
    before = _snapshot(ws)
    code, err = _comp(monkeypatch, capsys, "--workspace", ws.root, *args(ws))
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re_search(T + ".*" + message, err), err
    after = _snapshot(ws)
    # nothing half-written: no temporary file left, no submission file without its ledger row
    assert not [p for p in after if p.endswith(".tmp")], after
    assert sorted(p for p in after if p.startswith("submissions/") and p.endswith(".csv")) == sorted(
        p for p in before if p.startswith("submissions/") and p.endswith(".csv")
    )


def test_the_battery_has_at_least_40_distinct_inputs():
    assert len({c[0] for c in CASES}) == len(CASES) >= 40


def re_search(pattern, text):
    import re

    return re.search(pattern, text, re.S)


def _snapshot(ws) -> list[str]:
    return sorted(str(p.relative_to(ws.root)) for p in ws.root.rglob("*") if p.is_file())


def _comp(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["comp", *map(str, args)])
    monkeypatch.setattr(console.err, "_width", 10_000)  # one line stays one line
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err


def test_comp_runs_shows_the_others_and_marks_the_damaged_ones(ws, monkeypatch, capsys):
    for name in ("bad-yaml", "bad-scores"):
        shutil.copytree(ws.run(RUN).dir, ws.runs_dir / name)
    (ws.runs_dir / "bad-yaml" / "run.yaml").write_text("name: [x\n")
    (ws.runs_dir / "bad-scores" / "scores.json").write_text('{"cv": ')
    monkeypatch.setattr(sys, "argv", ["comp", "--workspace", str(ws.root), "runs"])
    monkeypatch.setattr(console.out, "_width", 300)
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "damaged: scores.json is damaged" in lines["bad-scores"]
    assert "damaged: run.yaml is damaged" in lines["bad-yaml"]
    assert lines[RUN].rstrip().endswith("done")


def test_a_damaged_fold_array_is_retrained_and_said_so(ws):
    from comp.runs import load_run

    paths = ws.run(RUN)
    before = load_run(ws, RUN).oof
    truncate(paths.fold_oof(1))
    result = train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    assert result.trained == [1] and result.skipped == [0, 2]
    assert "warning: fold 1: oof.npy is unreadable" in paths.log.read_text()
    assert "retraining fold 1" in paths.log.read_text()
    np.testing.assert_array_equal(load_run(ws, RUN).oof, before)


def test_a_run_with_no_finished_fold_takes_a_corrected_config_without_force(ws):
    """A config error inside fold 0 used to leave a 0/K run that refused the corrected config."""
    bad = ws.configs_dir / "v.yaml"
    bad.write_text(TFIDF_CONFIG.replace("min_df: 1", "min_df: 500"))  # more documents than a fold has
    with pytest.raises(Exception, match=r"cannot build features .*lower min_df"):
        train(ws, bad, n_folds=3)
    assert ws.run("v").exists and not ws.run("v").fold_done(0).exists()
    bad.write_text(TFIDF_CONFIG)
    result = train(ws, bad, n_folds=3)
    assert result.trained == [0, 1, 2]
    assert any("replaced run 'v', which had no finished fold (min_df: 500 -> 1)" in n for n in result.notes)
