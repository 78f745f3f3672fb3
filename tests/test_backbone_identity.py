"""A run records what its backbone's files held, and is not resumed from other weights under the same name.

The case that needs it: intermediate fine-tuning (STILTs), where one run's saved fold model is another
run's ``backbone:``. Retraining the first run keeps every tensor's shape, so its files keep their sizes.
"""

from __future__ import annotations

import os

import pytest
import yaml

from comp.errors import RunError
from comp.models.hf import hub
from comp.train import train
from tests.helpers import make_workspace
from tests.tiny_models import make_backbone


def _weights(folder, name, payload: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / name).write_bytes(payload)
    return folder


def test_the_model_fingerprint_follows_contents_not_sizes(tmp_path):
    folder = _weights(tmp_path / "m", "model.safetensors", b"a" * 4096)
    before = hub.fingerprint(str(folder))
    assert hub.fingerprint(str(folder)) == before  # stable
    (folder / "model.safetensors").write_bytes(b"b" * 4096)  # same size, other bytes
    assert hub.fingerprint(str(folder)) != before
    (folder / "tokenizer.json").write_text("{}")  # not a weight file: the model is the same
    after = hub.fingerprint(str(folder))
    assert hub.fingerprint(str(folder)) == after


def test_a_hub_cache_snapshot_is_identified_by_its_blob_names(tmp_path):
    """The cache names each blob by the hash of its content: two snapshots linking other blobs differ,
    and a snapshot's identity is read off its links."""
    blobs = tmp_path / "models--x--y" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / "1111").write_bytes(b"one")
    (blobs / "2222").write_bytes(b"two")
    snapshots = []
    for name, blob in (("aaa", "1111"), ("bbb", "2222")):
        snapshot = tmp_path / "models--x--y" / "snapshots" / name
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text("{}")
        os.symlink(blobs / blob, snapshot / "model.safetensors")
        snapshots.append(snapshot)
    assert hub.file_digest(snapshots[0] / "model.safetensors") == "1111"
    assert hub.fingerprint(str(snapshots[0])) != hub.fingerprint(str(snapshots[1]))


def test_a_gguf_file_is_identified_by_its_contents(tmp_path):
    model = tmp_path / "model.gguf"
    model.write_bytes(b"x" * 100)
    before = hub.backbone_identity(str(model))
    model.write_bytes(b"y" * 100)
    assert hub.backbone_identity(str(model)) != before


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("tiny-bert"), "bert")


def test_a_fold_model_as_backbone_is_recorded_and_its_retraining_refused(bert_dir, tmp_path):
    # the intermediate run: multi-label, one fold of two, its model saved
    first = make_workspace(tmp_path / "first", "multilabel", train_rows=40, test_rows=8)
    inter = first.configs_dir / "inter.yaml"
    inter.write_text(f"model: transformer\nbackbone: {bert_dir}\nepochs: 1\nmax_length: 32\nsave_models: true\n")
    train(first, inter, n_folds=2, only_fold=0)
    saved = first.run("inter").fold_model_dir(0)

    # the target run starts from it: a fresh head for its own classes, the backbone's identity in run.yaml
    second = make_workspace(tmp_path / "second", "multiclass", train_rows=40, test_rows=8)
    target = second.configs_dir / "target.yaml"
    target.write_text(f"model: transformer\nbackbone: {saved}\nepochs: 1\nmax_length: 32\n")
    train(second, target, n_folds=2)
    run_yaml = second.run("target").run_yaml
    recorded = yaml.safe_load(run_yaml.read_text())["inputs"]
    assert recorded == {"backbone": hub.backbone_identity(str(saved))}
    assert "was saved with a head of another size" in second.run("target").log.read_text()

    # the intermediate run is retrained: same shapes, same file sizes, other weights
    sizes = {p.name: p.stat().st_size for p in saved.iterdir()}
    train(first, inter, n_folds=2, only_fold=0, overrides=["lr=0.001"], force=True)
    assert {p.name: p.stat().st_size for p in saved.iterdir() if p.name in sizes} == sizes
    with pytest.raises(RunError, match=r"run 'target' was trained from backbone .* whose files have changed"):
        train(second, target, n_folds=2)
    assert yaml.safe_load(run_yaml.read_text())["inputs"] == recorded  # refused: nothing rewritten

    result = train(second, target, n_folds=2, force=True)
    assert result.trained == [0, 1]
    assert yaml.safe_load(run_yaml.read_text())["inputs"] == {"backbone": hub.backbone_identity(str(saved))}


def test_a_run_yaml_from_before_inputs_adopts_them_and_resumes(bert_dir, tmp_path):
    ws = make_workspace(tmp_path, "multiclass", train_rows=40, test_rows=8)
    config = ws.configs_dir / "ft.yaml"
    config.write_text(f"model: transformer\nbackbone: {bert_dir}\nepochs: 1\nmax_length: 32\n")
    train(ws, config, n_folds=2, only_fold=0)
    run_yaml = ws.run("ft").run_yaml
    raw = yaml.safe_load(run_yaml.read_text())
    del raw["inputs"]  # as an older comp wrote it
    run_yaml.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = train(ws, config, n_folds=2)
    assert result.skipped == [0] and result.trained == [1]  # fold 0 kept
    assert yaml.safe_load(run_yaml.read_text())["inputs"] == {"backbone": hub.backbone_identity(str(bert_dir))}


def test_families_without_a_backbone_record_no_inputs(tmp_path):
    ws = make_workspace(tmp_path, "multilabel", train_rows=40, test_rows=8)
    train(ws, ws.configs_dir / "tfidf.yaml", n_folds=2)
    assert "inputs" not in yaml.safe_load(ws.run("tfidf").run_yaml.read_text())
