"""export_hf_dataset on tiny datasets built here: parquet folders, save_to_disk folders and the offline cache."""

from __future__ import annotations

import socket

import datasets
import huggingface_hub.constants
import numpy as np
import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

from comp.errors import DataError
from comp.hf_dataset import export_hf_dataset, parse_spec
from comp.models.hf import hub

EMOTIONS = ["anger", "joy", "optimism", "sadness"]
_REAL_PROBE = hub.hub_reachable  # the autouse fixture replaces it


@pytest.fixture(autouse=True)
def _no_network(tmp_path, monkeypatch):
    """Every test uses its own cache and believes the hub is unreachable: nothing goes on the network."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    datasets.disable_progress_bars()


def _multiclass(n_train=40, n_test=12, with_id=True, seed=0, test_labels=True) -> DatasetDict:
    rng = np.random.default_rng(seed)
    feats = {"text": Value("string"), "label": ClassLabel(names=EMOTIONS)}
    if with_id:
        feats = {"id": Value("string"), **feats}

    def split(name, n, labelled=True):
        data = {
            "text": [f"{name} tweet {i} " + "x" * int(rng.integers(1, 5)) for i in range(n)],
            "label": rng.integers(0, 4, n).tolist() if labelled else [-1] * n,
        }
        if with_id:
            data["id"] = [f"{name[:2]}{i:04d}" for i in range(n)]
        return Dataset.from_dict(data, features=Features(feats))

    return DatasetDict(
        train=split("train", n_train),
        validation=split("validation", 8),
        test=split("test", n_test, test_labels),
    )


def _multilabel(n=30) -> DatasetDict:
    rng = np.random.default_rng(1)
    feats = Features(
        {
            "text": Value("string"),
            "labels": List(ClassLabel(names=EMOTIONS)),
            "id": Value("string"),
            "score": Value("float32"),
        }
    )

    def split(name, n):
        labels = [sorted(rng.choice(4, size=rng.integers(1, 3), replace=False).tolist()) for _ in range(n)]
        return Dataset.from_dict(
            {
                "text": [f"{name} comment {i}" for i in range(n)],
                "labels": labels,
                "id": [f"{name}-{i}" for i in range(n)],
                "score": rng.random(n).tolist(),
            },
            features=feats,
        )

    return DatasetDict(train=split("train", n), test=split("test", 10))


def _parquet_folder(dsd: DatasetDict, root):
    root.mkdir(parents=True)
    for name, ds in dsd.items():
        ds.to_parquet(str(root / f"{name}.parquet"))
    return root


def _saved_folder(dsd: DatasetDict, root):
    dsd.save_to_disk(str(root))
    return root


def _read(dest, name):
    return pd.read_csv(dest / name)


@pytest.mark.parametrize("layout", [_parquet_folder, _saved_folder], ids=["parquet", "save_to_disk"])
def test_multiclass_classlabel(tmp_path, layout):
    dsd = _multiclass()
    src = layout(dsd, tmp_path / "src")
    dest = tmp_path / "data"
    summary = export_hf_dataset(str(src), dest)

    train, test = _read(dest, "train.csv"), _read(dest, "test.csv")
    sample, answers = _read(dest, "sample_submission.csv"), _read(dest, "test_labels.csv")
    assert list(train.columns) == ["id", "text", "label"]
    assert list(test.columns) == ["id", "text"]
    assert list(sample.columns) == ["id", "label"]
    assert list(answers.columns) == ["id", "label"]
    assert train["id"].tolist() == dsd["train"]["id"]
    assert train["label"].tolist() == list(dsd["train"]["label"])
    assert pd.api.types.is_integer_dtype(train["label"])
    assert test["id"].tolist() == dsd["test"]["id"] == sample["id"].tolist() == answers["id"].tolist()
    assert (sample["label"] == 0).all()
    assert answers["label"].tolist() == list(dsd["test"]["label"])
    assert summary.task == "multiclass"
    assert summary.class_names == EMOTIONS
    assert summary.id_source == "dataset"
    assert (summary.train_splits, summary.test_split) == (["train"], "test")
    assert (summary.n_train, summary.n_test) == (40, 12)
    assert summary.has_answer_key
    assert sorted(p.name for p in dest.iterdir()) == [
        "sample_submission.csv",
        "test.csv",
        "test_labels.csv",
        "train.csv",
    ]


@pytest.mark.parametrize("layout", [_parquet_folder, _saved_folder], ids=["parquet", "save_to_disk"])
def test_multilabel_sequence_of_classlabel(tmp_path, layout):
    dsd = _multilabel()
    dest = tmp_path / "data"
    summary = export_hf_dataset(str(layout(dsd, tmp_path / "src")), dest)

    train, sample = _read(dest, "train.csv"), _read(dest, "sample_submission.csv")
    answers = _read(dest, "test_labels.csv")
    assert list(train.columns) == ["id", "text", *EMOTIONS]
    assert list(sample.columns) == ["id", *EMOTIONS]
    assert list(_read(dest, "test.csv").columns) == ["id", "text"]
    expected = np.zeros((30, 4), dtype=int)
    for i, row in enumerate(dsd["train"]["labels"]):
        expected[i, row] = 1
    np.testing.assert_array_equal(train[EMOTIONS].to_numpy(), expected)
    assert sample["id"].tolist() == dsd["test"]["id"]
    assert (sample[EMOTIONS].to_numpy() == 0).all()
    assert answers[EMOTIONS].sum(axis=1).ge(1).all()
    assert summary.task == "multilabel"
    assert summary.label_columns == EMOTIONS
    assert summary.dropped_features == ["score"]


def test_missing_id_column_generates_ids_and_validation_can_join_train(tmp_path):
    src = _parquet_folder(_multiclass(with_id=False), tmp_path / "src")
    dest = tmp_path / "data"
    summary = export_hf_dataset(str(src), dest, train_splits=["train", "validation"])

    train, test = _read(dest, "train.csv"), _read(dest, "test.csv")
    assert train["id"].tolist() == [f"train_{i:06d}" for i in range(40)] + [f"validation_{i:06d}" for i in range(8)]
    assert test["id"].tolist() == [f"test_{i:06d}" for i in range(12)]
    assert _read(dest, "sample_submission.csv")["id"].tolist() == test["id"].tolist()
    assert summary.id_source == "generated"
    assert summary.n_train == 48


def test_duplicate_ids_are_replaced(tmp_path):
    dsd = _multiclass()
    dsd["test"] = dsd["test"].map(lambda row, i: {"id": "tr0000" if i == 0 else row["id"]}, with_indices=True)
    summary = export_hf_dataset(str(_saved_folder(dsd, tmp_path / "src")), tmp_path / "data")
    assert summary.id_source == "generated"
    assert any("not unique" in note for note in summary.notes)
    assert _read(tmp_path / "data", "train.csv")["id"].iloc[0] == "train_000000"


def test_test_split_falls_back_to_validation(tmp_path):
    dsd = _multiclass()
    del dsd["test"]
    summary = export_hf_dataset(str(_parquet_folder(dsd, tmp_path / "src")), tmp_path / "data")
    assert summary.test_split == "validation"
    assert _read(tmp_path / "data", "test.csv")["id"].tolist() == dsd["validation"]["id"]
    assert summary.has_answer_key


def test_unlabelled_test_split_has_no_answer_key(tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "test_labels.csv").write_text("id,label\nold,1\n")
    dsd = _multiclass(test_labels=False)
    summary = export_hf_dataset(str(_saved_folder(dsd, tmp_path / "src")), dest)
    assert not summary.has_answer_key
    assert not (dest / "test_labels.csv").exists()
    assert any("'test' split has no labels" in note and "validation" in note for note in summary.notes)
    assert (_read(dest, "sample_submission.csv")["label"] == 0).all()


def test_unlabelled_train_rows_are_left_out(tmp_path):
    dsd = _multiclass()
    dsd["train"] = dsd["train"].map(lambda row, i: {"label": -1 if i < 3 else row["label"]}, with_indices=True)
    summary = export_hf_dataset(str(_saved_folder(dsd, tmp_path / "src")), tmp_path / "data")
    train = _read(tmp_path / "data", "train.csv")
    assert summary.n_train == len(train) == 37
    assert train["id"].iloc[0] == "tr0003"
    assert train["label"].between(0, 3).all()


def test_plain_string_label_is_copied_and_not_a_text_column(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for split, n in (("train", 20), ("test", 6)):
        pd.DataFrame(
            {
                "sentence": [f"s{i}" for i in range(n)],
                "context": [f"c{i}" for i in range(n)],
                "sentiment": ["pos", "neg"] * (n // 2),
            }
        ).to_csv(src / f"{split}.csv", index=False)
    summary = export_hf_dataset(str(src), tmp_path / "data")
    train, answers = _read(tmp_path / "data", "train.csv"), _read(tmp_path / "data", "test_labels.csv")
    assert list(train.columns) == ["id", "sentence", "context", "sentiment"]
    assert train["sentiment"].tolist() == ["pos", "neg"] * 10
    assert answers["sentiment"].tolist() == ["pos", "neg"] * 3
    assert summary.text_columns == ["sentence", "context"]
    assert summary.class_names is None


def test_several_classlabels_need_label_column(tmp_path):
    feats = Features(
        {"text": Value("string"), "topic": ClassLabel(names=["a", "b"]), "mood": ClassLabel(names=["x", "y"])}
    )
    split = Dataset.from_dict({"text": ["t1", "t2"], "topic": [0, 1], "mood": [1, 0]}, features=feats)
    src = _saved_folder(DatasetDict(train=split, test=split), tmp_path / "src")
    with pytest.raises(DataError, match=r"several ClassLabel features \(topic, mood\); pick one with label_column"):
        export_hf_dataset(str(src), tmp_path / "data")
    summary = export_hf_dataset(str(src), tmp_path / "data", label_column="mood")
    assert list(_read(tmp_path / "data", "train.csv").columns) == ["id", "text", "mood"]
    assert summary.dropped_features == ["topic"]


def test_error_without_string_feature(tmp_path):
    feats = Features({"x": Value("int32"), "label": ClassLabel(names=["a", "b"])})
    split = Dataset.from_dict({"x": [1, 2], "label": [0, 1]}, features=feats)
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=r"no string feature to use as text \(features: x \(Value\('int32'\)\)"):
        export_hf_dataset(str(_saved_folder(DatasetDict(train=split, test=split), tmp_path / "src")), dest)
    assert not dest.exists()


def test_error_without_label_feature(tmp_path):
    feats = Features({"text": Value("string"), "score": Value("float32")})
    split = Dataset.from_dict({"text": ["a", "b"], "score": [0.1, 0.2]}, features=feats)
    src = _saved_folder(DatasetDict(train=split, test=split), tmp_path / "src")
    with pytest.raises(
        DataError,
        match=r"no recognisable label feature \(features: text \(Value\('string'\)\), score \(Value\('float32'\)\)\); "
        r"supported label features: ClassLabel \(multiclass\), Sequence/List of ClassLabel \(multilabel\)",
    ):
        export_hf_dataset(str(src), tmp_path / "data")


def test_error_without_test_or_validation_split(tmp_path):
    dsd = _multiclass()
    src = _saved_folder(DatasetDict(train=dsd["train"], extra=dsd["test"]), tmp_path / "src")
    with pytest.raises(DataError, match=r"no 'test' or 'validation' split for the test set \(splits: train, extra\)"):
        export_hf_dataset(str(src), tmp_path / "data")
    with pytest.raises(DataError, match=r"has no split 'dev'; its splits are: train, extra"):
        export_hf_dataset(str(src), tmp_path / "data", test_split="dev")
    summary = export_hf_dataset(str(src), tmp_path / "data", test_split="extra")
    assert summary.test_split == "extra"


def _configs_folder(root):
    for config in ("small", "large"):
        _parquet_folder(_multiclass(n_train=10, n_test=4), root / config)
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: small\n  data_dir: small\n- config_name: large\n  data_dir: large\n---\n"
    )
    return root


def test_configs(tmp_path):
    src = _configs_folder(tmp_path / "src")
    with pytest.raises(DataError, match=r"has no config 'huge'; available configs: small, large"):
        export_hf_dataset(f"{src}:huge", tmp_path / "data")
    with pytest.raises(
        DataError, match=r"has several configs; pick one with --hf .*:CONFIG \(available: small, large\)"
    ):
        export_hf_dataset(str(src), tmp_path / "data")
    summary = export_hf_dataset(f"{src}:large", tmp_path / "data")
    assert summary.n_train == 10
    with pytest.raises(DataError, match=r"was saved with save_to_disk and has no configs; drop ':x'"):
        export_hf_dataset(f"{_saved_folder(_multiclass(), tmp_path / 'saved')}:x", tmp_path / "data")


def test_parse_spec(tmp_path):
    assert parse_spec("go_emotions") == ("go_emotions", None)
    assert parse_spec("google-research-datasets/go_emotions:simplified") == (
        "google-research-datasets/go_emotions",
        "simplified",
    )
    odd = tmp_path / "a:b"
    odd.mkdir()
    assert parse_spec(str(odd)) == (str(odd), None)
    with pytest.raises(DataError, match="is not NAME or NAME:CONFIG"):
        parse_spec("name:")


def test_not_cached_offline_error(tmp_path):
    expected = (
        "Hugging Face dataset someone/nothing:cfg is not in the local cache and the hub cannot be reached: "
        "download it once where there is internet "
        "(python -c \"import datasets; datasets.load_dataset('someone/nothing', 'cfg')\") "
        "or point --hf at a local folder"
    )
    with pytest.raises(DataError) as info:
        export_hf_dataset("someone/nothing:cfg", tmp_path / "data")
    assert str(info.value) == expected


def _cache_tiny(tmp_path, monkeypatch):
    """Load a local folder named tiny_emo once: the cache then holds it as hub dataset 'tiny_emo'."""
    _parquet_folder(_multiclass(), tmp_path / "src" / "tiny_emo")
    datasets.load_dataset(str(tmp_path / "src" / "tiny_emo"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # 'tiny_emo' is no longer a folder here, so it is a hub name


def test_offline_reads_the_cache(tmp_path, monkeypatch):
    _cache_tiny(tmp_path, monkeypatch)
    before = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    summary = export_hf_dataset("tiny_emo", tmp_path / "data")
    assert summary.source == "local cache (offline)"
    assert summary.n_train == 40 and summary.class_names == EMOTIONS
    assert (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE) == before
    with pytest.raises(
        DataError, match=r"tiny_emo:other is not in the local cache \(the cache holds its configs default\)"
    ):
        export_hf_dataset("tiny_emo:other", tmp_path / "data")


def test_connection_error_retries_offline(tmp_path, monkeypatch):
    _cache_tiny(tmp_path, monkeypatch)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    real, calls = datasets.load_dataset, []

    def flaky(*args, **kwargs):
        if not datasets.config.HF_HUB_OFFLINE:
            calls.append("online")
            raise ConnectionError("Couldn't reach 'tiny_emo' on the Hub (ConnectError)")
        calls.append("offline" if huggingface_hub.constants.HF_HUB_OFFLINE else "half-offline")
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", flaky)
    summary = export_hf_dataset("tiny_emo", tmp_path / "data")
    assert calls == ["online", "offline"]
    assert summary.source == "local cache (offline)"
    assert datasets.config.HF_HUB_OFFLINE is False and huggingface_hub.constants.HF_HUB_OFFLINE is False


def test_hub_probe(monkeypatch):
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert _REAL_PROBE(f"http://127.0.0.1:{port}", timeout=2)
    assert not _REAL_PROBE(f"http://127.0.0.1:{port}", timeout=2)  # nobody listens any more


def test_offline_cache_with_several_configs(tmp_path, monkeypatch):
    src = _configs_folder(tmp_path / "src" / "multi_cfg")
    for config in ("small", "large"):
        datasets.load_dataset(str(src), config)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"several configs of multi_cfg \((small, large|large, small)\); pick one"):
        export_hf_dataset("multi_cfg", tmp_path / "data")
    assert export_hf_dataset("multi_cfg:small", tmp_path / "data").source == "local cache (offline)"


def test_list_of_strings_label_is_multilabel(tmp_path):
    feats = Features({"text": Value("string"), "tags": List(Value("string"))})
    train = Dataset.from_dict({"text": ["a", "b", "c"], "tags": [["x"], ["y", "x"], []]}, features=feats)
    test = Dataset.from_dict({"text": ["d"], "tags": [["z"]]}, features=feats)
    src = _saved_folder(DatasetDict(train=train, test=test), tmp_path / "src")
    summary = export_hf_dataset(str(src), tmp_path / "data", label_column="tags")
    train_csv = _read(tmp_path / "data", "train.csv")
    assert list(train_csv.columns) == ["id", "text", "x", "y", "z"]
    assert train_csv[["x", "y", "z"]].to_numpy().tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert summary.task == "multilabel" and summary.class_names == ["x", "y", "z"]
