from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comp.data import infer_schema, load_competition, read_csv
from comp.errors import DataError
from comp.fetch import fetch_local
from comp.workspace import init_workspace
from tests.helpers import make_workspace, multiclass_source, multilabel_source


def _frames(folder: Path):
    return [read_csv(folder / n) for n in ("train.csv", "test.csv", "sample_submission.csv")]


def test_infer_multilabel(tmp_path):
    multilabel_source(tmp_path)
    schema = infer_schema(*_frames(tmp_path))
    assert schema["task"] == "multilabel"
    assert schema["id_column"] == "ID"
    assert schema["text_columns"] == ["Tweet"]
    assert schema["label_columns"] == ["joy", "optimism", "anger", "disgust", "sadness", "fear"]
    assert schema["classes"] == schema["label_columns"]
    assert schema["submission_format"] == "labels"


def test_infer_multiclass_classes_from_train_values(tmp_path):
    multiclass_source(tmp_path)
    schema = infer_schema(*_frames(tmp_path))
    assert schema["task"] == "multiclass"
    assert schema["label_columns"] == ["label"]
    assert schema["classes"] == [0, 1, 2]


def test_infer_binary_and_probability_submission(tmp_path):
    pd.DataFrame({"id": [1, 2, 3, 4], "text": list("abcd"), "target": [0, 1, 0, 1]}).to_csv(
        tmp_path / "train.csv", index=False
    )
    pd.DataFrame({"id": [5, 6], "text": ["e", "f"]}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"id": [5, 6], "target": [0.5, 0.5]}).to_csv(tmp_path / "sample_submission.csv", index=False)
    schema = infer_schema(*_frames(tmp_path))
    assert schema["task"] == "binary"
    assert schema["classes"] == [0, 1]
    assert schema["submission_format"] == "probabilities"


def test_several_text_columns_are_joined(tmp_path):
    pd.DataFrame({"id": ["1", "2"], "title": ["t1", "t2"], "body": ["b1", ""], "label": ["x", "y"]}).to_csv(
        tmp_path / "train.csv", index=False
    )
    pd.DataFrame({"id": ["3", "4"], "title": ["t3", "t4"], "body": ["b3", "b4"]}).to_csv(
        tmp_path / "test.csv", index=False
    )
    pd.DataFrame({"id": ["3", "4"], "label": ["x", "x"]}).to_csv(tmp_path / "sample_submission.csv", index=False)
    ws = init_workspace("s", tmp_path / "ws", {})
    fetch_local(ws, tmp_path)
    settings = ws.load_settings()
    assert settings.text_columns == ["title", "body"] and settings.task == "binary"
    settings.text_separator = " | "
    comp = load_competition(ws, settings)
    assert comp.train_texts == ["t1 | b1", "t2"]
    assert comp.Y[:, 0].tolist() == [0, 1]


def test_ids_keep_leading_zeros_and_text_na_stays_text(tmp_path):
    ws = make_workspace(tmp_path)
    comp = load_competition(ws)
    assert all(len(i) == 5 for i in comp.train_ids)  # "00042", not 42
    assert comp.Y.dtype == np.uint8 and comp.Y.shape[1] == 6


# ---- bad input: each message names the file/column/value and says what to do -------------------


def _bad(tmp_path, mutate, match):
    source = tmp_path / "download"
    multilabel_source(source)
    mutate(source)
    ws = init_workspace("s", tmp_path / "ws", {})
    with pytest.raises(DataError, match=match):
        fetch_local(ws, source)
    assert sorted(p.name for p in ws.data_dir.iterdir()) == [], "nothing may be left in data/"


def _edit(path, fn):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(frame).to_csv(path, index=False)


def test_missing_file(tmp_path):
    _bad(
        tmp_path,
        lambda s: (s / "test.csv").unlink(),
        r"has no test.csv \(found: sample_submission.csv, test_labels.csv, train.csv\)",
    )


def test_misnamed_column_lists_columns(tmp_path):
    _bad(
        tmp_path,
        lambda s: _edit(s / "train.csv", lambda f: f.rename(columns={"anger": "angry"})),
        r"train.csv has no column 'anger'; columns are: ID, Tweet, joy, optimism, angry",
    )


def test_duplicate_ids(tmp_path):
    def dup(f):
        f.loc[1, "ID"] = f.loc[0, "ID"]
        return f

    _bad(tmp_path, lambda s: _edit(s / "train.csv", dup), r"train.csv has 1 duplicate 'ID' value\(s\)")


def test_empty_text(tmp_path):
    def blank(f):
        f.loc[3, "Tweet"] = "  "
        return f

    _bad(
        tmp_path,
        lambda s: _edit(s / "train.csv", blank),
        r"train.csv has 1 row\(s\) with empty or missing text .*allow_empty_text",
    )


def test_label_not_01(tmp_path):
    def two(f):
        f.loc[5, "fear"] = "2"
        return f

    _bad(tmp_path, lambda s: _edit(s / "train.csv", two), r"train.csv column 'fear' has values other than 0/1 \(2; ids")


def test_test_ids_differ_from_sample(tmp_path):
    def change(f):
        f.loc[0, "ID"] = "nope"
        return f

    _bad(
        tmp_path,
        lambda s: _edit(s / "sample_submission.csv", change),
        r"test.csv and sample_submission.csv have different ids: 1 only in test .* 1 only in sample_submission "
        r"\(nope\)",
    )


def test_not_utf8(tmp_path):
    def latin1(s):
        (s / "train.csv").write_bytes((s / "train.csv").read_bytes().replace(b"happy", "h\u00e4ppy".encode("latin-1")))

    _bad(tmp_path, latin1, r"train.csv is not UTF-8 text \(byte 0xe4 at offset \d+\); re-save it as UTF-8")


def test_not_a_csv(tmp_path):
    _bad(
        tmp_path,
        lambda s: (s / "test.csv").write_text("just one line of prose\n"),
        r"test.csv is not a CSV with several columns",
    )


def test_zip_without_expected_files(tmp_path):
    import zipfile

    archive = tmp_path / "comp.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "hello")
    ws = init_workspace("s", tmp_path / "ws", {})
    with pytest.raises(DataError, match=r"has no train.csv, test.csv, sample_submission.csv \(found: readme.txt\)"):
        fetch_local(ws, archive)


def test_nested_kaggle_zip_is_unpacked(tmp_path):
    import zipfile

    source = tmp_path / "download"
    multilabel_source(source)
    archive = tmp_path / "competition.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("train.csv", "test.csv"):
            inner = tmp_path / f"{name}.zip"
            with zipfile.ZipFile(inner, "w") as iz:
                iz.write(source / name, name)
            zf.write(inner, f"{name}.zip")
        zf.write(source / "sample_submission.csv", "sampleSubmission.csv")
    ws = init_workspace("s", tmp_path / "ws", {})
    result = fetch_local(ws, archive)
    assert {"data/train.csv", "data/test.csv", "data/sample_submission.csv"} <= set(result.files)
    assert load_competition(ws).Y.shape == (300, 6)


def test_refetch_with_different_data_needs_force(tmp_path):
    ws = make_workspace(tmp_path)
    other = tmp_path / "other"
    multilabel_source(other, seed=99)
    with pytest.raises(DataError, match="data/ already holds a different train.csv; pass --force"):
        fetch_local(ws, other)
    before = (ws.data_dir / "train.csv").read_bytes()
    assert before == (tmp_path / "download" / "train.csv").read_bytes()
    fetch_local(ws, other, force=True)
    assert (ws.data_dir / "train.csv").read_bytes() == (other / "train.csv").read_bytes()


def test_comp_yaml_overrides_are_kept(tmp_path):
    ws = make_workspace(tmp_path)
    settings = ws.load_settings()
    settings.metric = "f1_micro"
    settings.label_columns = ["joy", "optimism", "anger", "disgust", "sadness", "fear"]
    ws.save_settings(settings)
    fetch_local(ws, tmp_path / "download")
    assert ws.load_settings().metric == "f1_micro"
