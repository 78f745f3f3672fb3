"""run.yaml as a typed record (comp.record): round trips, files written before schema_version
existed, and one-line refusals of damaged or newer files."""

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from comp.ensemble import make_ensemble
from comp.errors import RunError
from comp.record import (
    SCHEMA_VERSION,
    CompetitionRecord,
    FoldsRecord,
    PartialOof,
    RunRecord,
    SecondStageRecord,
    TeacherRecord,
    read_record,
    to_dict,
    write_record,
)
from comp.runs import list_runs, load_run, read_run_yaml
from comp.train import train
from tests.helpers import make_workspace

# run.yaml files as the comp of before schema_version wrote them (a tfidf run and a mean blend of
# the workspace of tests.helpers.make_workspace, 3 folds)
V1 = Path(__file__).parent / "data" / "run_yaml_v1"


def _student() -> RunRecord:
    teacher = TeacherRecord(
        run="tfidf",
        outputs="0123456789abcdef",
        mode="soft",
        digest="fedcba9876543210",
        folds={"file": "data/folds-k3-s42.csv", "hash": "ab" * 32},
        data="1234",
        weight=0.5,
        min_confidence=0.8,
        test=True,
        extra={"file": "data/extra.csv", "hash": "cd", "rows": 7},
    )
    return RunRecord(
        name="student",
        kind="model",
        model="tfidf",
        config={"model": "tfidf", "C": 2.0, "word_ngrams": [1, 2]},
        config_file="configs/student.yaml",
        folds=FoldsRecord("data/folds-k3-s42.csv", "ab" * 32, 3, 42),
        competition=CompetitionRecord("test-comp", "multilabel", "f1_macro", ["joy", "anger"]),
        data={"recorded": "2026-03-01T12:00:00", "train": {"rows": 3}},
        second_stage=SecondStageRecord(
            pseudo_labels=teacher,
            distill=TeacherRecord(run="tfidf", outputs="0123", mode="oof", alpha=0.3, temperature=2.0),
        ),
        cv_optimistic=True,
        cv_optimistic_reason="distilled from OOF",
        partial_oof=PartialOof(40, 200),
        digest="0011223344556677",
        versions={"comp": "0.1.0"},
        git_commit="abc",
        created="2026-03-01T12:00:00",
        completed="2026-03-01T12:05:00",
        seconds=12.5,
    )


def test_a_record_written_then_read_is_equal_and_its_bytes_are_stable(tmp_path):
    record = _student()
    path = tmp_path / "run.yaml"
    write_record(path, record)
    again = read_record(path, "student")
    assert again == record
    first = path.read_bytes()
    write_record(path, again)
    assert path.read_bytes() == first
    raw = yaml.safe_load(first)
    assert list(raw)[:4] == ["schema_version", "name", "kind", "model"] and raw["schema_version"] == SCHEMA_VERSION
    assert raw["second_stage"]["distill"] == {
        "run": "tfidf",
        "outputs": "0123",
        "mode": "oof",
        "alpha": 0.3,
        "temperature": 2.0,
    }  # the unset pseudo-label fields are left out


def test_an_ensemble_has_no_model_keys_and_a_model_no_ensemble_keys(tmp_path):
    model = dataclasses.replace(
        _student(), second_stage=None, cv_optimistic=False, cv_optimistic_reason=None, partial_oof=None
    )
    raw = to_dict(model)
    assert "members" not in raw and "cv_optimistic" not in raw and "partial_oof" not in raw
    blend = RunRecord(
        name="blend",
        kind="ensemble",
        model="ensemble(mean)",
        folds=model.folds,
        competition=model.competition,
        created="2026-03-01T12:00:00",
        members=["a", "b"],
        config={"method": "mean"},
    )
    raw = to_dict(blend)
    assert raw["members"] == ["a", "b"] and "config_file" not in raw and "digest" not in raw
    write_record(tmp_path / "run.yaml", blend)
    assert read_record(tmp_path / "run.yaml", "blend") == blend


def test_a_run_yaml_of_before_schema_version_reads_as_version_1():
    model = read_record(V1 / "model.yaml", "tfidf")
    assert "schema_version" not in (V1 / "model.yaml").read_text()
    assert model.schema_version == 1 and model.kind == "model" and not model.is_ensemble
    assert model.folds == FoldsRecord(
        "data/folds-k3-s42.csv", "962e5cdd2bf54fa2237c42bd1bffcde982225b57fbfa8d68456d427dd464a4b5", 3, 42, None
    )
    assert model.competition.classes == ["joy", "optimism", "anger", "disgust", "sadness", "fear"]
    assert model.config["C"] == 2.0 and model.config_file == "configs/tfidf.yaml"
    assert model.digest == "6f1d14fed9d39a12" and model.seconds == 0.38 and model.git_commit is None
    assert model.data["train"]["rows"] == 300 and model.optimistic_reason is None and model.partial_oof is None
    blend = read_record(V1 / "ensemble.yaml", "blend")
    assert blend.is_ensemble and blend.members == ["tfidf", "tfidf2"] and blend.config["method"] == "mean"
    assert blend.rebuild_hint() == "re-create it with `comp ensemble tfidf tfidf2 --name blend --method mean --force`"
    assert blend.digest is None and blend.folds == model.folds


def test_a_run_of_before_schema_version_resumes_and_is_rewritten_as_version_1(tmp_path):
    ws = make_workspace(tmp_path)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, only_fold=0)
    paths = ws.run("tfidf")
    # the same config, folds and data as the golden run: the same digest, so fold 0 is this run's
    assert read_run_yaml(paths).digest == "6f1d14fed9d39a12"
    shutil.copy(V1 / "model.yaml", paths.run_yaml)
    result = train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    assert result.skipped == [0] and result.trained == [1, 2]
    record = read_run_yaml(paths)
    assert record.schema_version == 1 and record.created == "2026-12-02T03:03:45"  # its history kept
    assert yaml.safe_load(paths.run_yaml.read_text())["schema_version"] == 1
    assert load_run(ws, "tfidf").record == record


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("record"))
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=3, name="tfidf2", overrides=["C=1.0"])
    make_ensemble(ws, ["tfidf", "tfidf2"], "blend")
    return ws


def test_the_written_run_yaml_round_trips(trained):
    for name in ("tfidf", "blend"):
        paths = trained.run(name)
        before = paths.run_yaml.read_bytes()
        record = read_run_yaml(paths)
        write_record(paths.run_yaml, record)
        assert paths.run_yaml.read_bytes() == before
        assert read_run_yaml(paths) == record
    assert read_run_yaml(trained.run("blend")).members == ["tfidf", "tfidf2"]


def _edited(trained, tmp_path, edit) -> Path:
    """A copy of the trained workspace whose tfidf run.yaml mapping went through ``edit``."""
    root = tmp_path / "ws"
    shutil.copytree(trained.root, root)
    path = root / "runs" / "tfidf" / "run.yaml"
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


REDO = "re-run `comp train configs/tfidf.yaml` (with --name tfidf if it differs from the file name) to rebuild it"


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda r: r.update(schema_version=2),
            "{path} has schema_version 2, newer than this comp reads (1); upgrade comp (pip install -U comp) to read "
            "this run",
        ),
        (lambda r: r.update(schema_version="one"), "{path}: schema_version must be an integer, got 'one'; " + REDO),
        (lambda r: r["folds"].pop("hash"), "{path}: folds.hash is missing; " + REDO),
        (lambda r: r.pop("competition"), "{path}: competition is missing; " + REDO),
        (
            lambda r: r["folds"].update(n_folds="three"),
            "{path}: folds: n_folds: expected an integer, got 'three'; " + REDO,
        ),
        (lambda r: r.update(kind="blend"), "{path}: kind: 'blend' is not one of model, ensemble; " + REDO),
        (lambda r: r.update(members="tfidf2"), "{path}: members: expected a list, got 'tfidf2'; " + REDO),
    ],
)
def test_a_damaged_or_newer_run_yaml_is_refused_in_one_line(trained, tmp_path, edit, message):
    root = _edited(trained, tmp_path, edit)
    path = root / "runs" / "tfidf" / "run.yaml"
    expected = message.format(path=path)
    from comp.workspace import Workspace

    with pytest.raises(RunError) as caught:
        load_run(Workspace(root), "tfidf")
    assert str(caught.value) == expected
    [summary] = [s for s in list_runs(Workspace(root)) if s.name == "tfidf"]
    assert summary.status == "damaged: " + re.sub(r"^" + re.escape(str(path)), "run.yaml", expected).split(";")[0]


@pytest.mark.parametrize(
    "edit, start",
    [
        (lambda r: r.update(schema_version=7), " has schema_version 7, newer than this comp reads (1); upgrade comp"),
        (lambda r: r["competition"].pop("classes"), ": competition.classes is missing; re-run `comp train"),
    ],
)
def test_the_cli_refuses_it_in_one_line_without_a_traceback(trained, tmp_path, edit, start):
    root = _edited(trained, tmp_path, edit)
    env = {**os.environ, "COLUMNS": "10000", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "comp", "--workspace", str(root), "submit", "tfidf", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert str(root / "runs" / "tfidf" / "run.yaml") + start in lines[0] and "Traceback" not in done.stderr


def test_an_unknown_key_names_the_valid_ones(trained, tmp_path):
    root = _edited(trained, tmp_path, lambda r: r.update(fold_seconds={0: 1.0}))
    from comp.workspace import Workspace

    with pytest.raises(
        RunError,
        match=r"run.yaml: unknown key\(s\) fold_seconds; valid keys are: competition, "
        r"completed, config, .*; re-run `comp train configs/tfidf.yaml`",
    ):
        load_run(Workspace(root), "tfidf")


def test_write_run_yaml_takes_only_a_record(trained):
    from comp.runs import write_run_yaml

    with pytest.raises(TypeError, match="takes a RunRecord, got dict"):
        write_run_yaml(trained.run("tfidf"), {"name": "tfidf"})
