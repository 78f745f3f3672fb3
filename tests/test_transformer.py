"""The transformer family on tiny random BERT / RoBERTa backbones (CPU, no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from comp.config import build
from comp.errors import ConfigError, RunError
from comp.models import load_model_config
from comp.models import transformer as T
from comp.models.base import TaskInfo
from comp.models.hf import cache, hub, losses
from comp.models.hf.checks import auto_max_length, validation_score
from comp.models.hf.trainer import CompTrainer, param_groups
from tests.tiny_models import CLASSES, crash_at_training_step, fold_context, make_backbone, synthetic

REPO = Path(__file__).resolve().parents[1]
# small enough for seconds on 2 CPU cores, enough steps for a 2-layer model to find the cue words
FAST = {"lr": 3e-3, "batch_size": 8, "eval_batch_size": 16, "epochs": 5, "patience": 0, "max_length": 32}


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("tiny-roberta"), "roberta")


def _config(backbone, **kw):
    return build(T.Config, {"model": "transformer", "backbone": str(backbone), **{**FAST, **kw}}, "test")


_context = fold_context


def _prior_score(Y_train, Y_valid, task):
    P = np.tile(Y_train.mean(0), (len(Y_valid), 1))
    return validation_score(P, Y_valid, task)[0]


# ---- learning -----------------------------------------------------------------------------------
def test_bert_multilabel_loss_falls_and_beats_the_prior(bert_dir, tmp_path):
    texts, Y = synthetic(160, "multilabel", seed=1)
    task = TaskInfo("multilabel", CLASSES)
    model = T.Model(_config(bert_dir), task, _context(tmp_path))
    model.fit(texts[:120], Y[:120], valid=(texts[120:], Y[120:]))
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0]
    P = model.predict_proba(texts[120:])
    assert P.shape == (40, 4) and np.all((P >= 0) & (P <= 1))
    oof = validation_score(P, Y[120:], task)[0]
    assert oof == pytest.approx(model.best_score_)  # the best checkpoint is the one predicting
    assert oof > _prior_score(Y[:120], Y[120:], task) + 0.1


def test_roberta_multiclass_beats_the_prior(roberta_dir, tmp_path):
    texts, Y = synthetic(160, "multiclass", seed=2)
    task = TaskInfo("multiclass", CLASSES)
    model = T.Model(_config(roberta_dir, epochs=6), task, _context(tmp_path))
    model.fit(texts[:120], Y[:120], valid=(texts[120:], Y[120:]))
    P = model.predict_proba(texts[120:])
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-6)
    assert validation_score(P, Y[120:], task)[0] > _prior_score(Y[:120], Y[120:], task) + 0.15


# ---- loss and optimizer pieces --------------------------------------------------------------------
def test_pos_weight_values():
    Y = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(losses.class_weight_values(Y, "multilabel", "balanced", 100.0), [3.0, 7.0, 100.0])
    np.testing.assert_allclose(losses.class_weight_values(Y, "multilabel", "sqrt", 100.0), [3**0.5, 7**0.5, 100.0])
    np.testing.assert_allclose(losses.class_weight_values(Y, "multilabel", "balanced", 5.0), [3.0, 5.0, 5.0])
    assert losses.class_weight_values(Y, "multilabel", "none", 5.0) is None
    Ymc = np.eye(3)[[0, 0, 0, 0, 0, 0, 1, 2]]  # multiclass: n / (k * count)
    np.testing.assert_allclose(losses.class_weight_values(Ymc, "multiclass", "balanced", 10.0), [8 / 18, 8 / 3, 8 / 3])


def test_weighted_and_focal_losses_match_torch():
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), (torch.rand(6, 3) > 0.5).float()
    w = torch.tensor([1.0, 3.0, 0.5])
    expected = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=w)
    assert torch.allclose(losses.loss_value(logits, labels, "multilabel", w), expected)
    onehot = torch.eye(3)[[0, 1, 2, 1, 0, 2]]
    expected = F.cross_entropy(logits, onehot.argmax(1), weight=w)
    assert torch.allclose(losses.loss_value(logits, onehot, "multiclass", w), expected)
    # focal loss down-weights easy rows: never above plain BCE, equal at gamma 0
    plain = losses.loss_value(logits, labels, "multilabel")
    assert torch.allclose(losses.loss_value(logits, labels, "multilabel", gamma=0.0), plain)
    assert losses.loss_value(logits, labels, "multilabel", gamma=2.0) < plain


def test_layer_wise_lr_decay_groups(bert_dir):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(bert_dir), num_labels=4)
    groups = param_groups(model, lr=1.0, weight_decay=0.01, layer_decay=0.5, no_decay=set())
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == 1.0
    assert lr_of[id(named["bert.encoder.layer.1.attention.self.query.weight"])] == 0.5
    assert lr_of[id(named["bert.encoder.layer.0.attention.self.query.weight"])] == 0.25
    assert lr_of[id(named["bert.embeddings.word_embeddings.weight"])] == 0.125
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_auto_max_length():
    lengths = np.array([5] * 98 + [60, 300])
    assert auto_max_length(lengths, 99.0, 512) == 64  # percentile 99 is ~62 -> next multiple of 8
    assert auto_max_length(lengths, 100.0, 128) == 128
    assert auto_max_length(np.array([3, 4]), 99.0, 512) == 8


# ---- training control -----------------------------------------------------------------------------
def test_early_stopping_waits_for_min_epochs(bert_dir, tmp_path):
    texts, Y = synthetic(60, "multilabel", seed=3)
    task = TaskInfo("multilabel", CLASSES)
    still = {"lr": 1e-12, "epochs": 5, "patience": 1, "batch_size": 16}  # the score never improves

    def evaluations(min_epochs):
        model = T.Model(_config(bert_dir, min_epochs=min_epochs, **still), task, _context(tmp_path))
        model.fit(texts[:40], Y[:40], valid=(texts[40:], Y[40:]))
        return [h["epoch"] for h in model.history_]

    assert evaluations(1.0) == [1.0, 2.0]
    assert evaluations(3.0) == [1.0, 2.0, 3.0]


def test_sorted_inference_returns_rows_in_input_order(bert_dir, tmp_path):
    texts, Y = synthetic(50, "multilabel", seed=4)
    task = TaskInfo("multilabel", CLASSES)
    model = T.Model(_config(bert_dir, epochs=1), task, _context(tmp_path)).fit(texts[:30], Y[:30])
    sorted_batches = model.predict_proba(texts)
    model.config.eval_batch_size = 1  # every row alone: no sorting, no padding
    one_by_one = model.predict_proba(texts)
    np.testing.assert_allclose(sorted_batches, one_by_one, atol=1e-5)
    assert len({round(float(p), 6) for p in sorted_batches[:, 0]}) > 10  # rows differ, so order matters


def test_resume_after_a_crash_continues_from_the_checkpoint(bert_dir, tmp_path):
    texts, Y = synthetic(80, "multilabel", seed=5)
    task = TaskInfo("multilabel", CLASSES)
    config = _config(bert_dir, epochs=3, checkpoint_every=4, batch_size=16, eval_every=4)
    reference = T.Model(config, task, _context(tmp_path / "ref")).fit(texts[:60], Y[:60], valid=(texts[60:], Y[60:]))

    with crash_at_training_step(7), pytest.raises(KeyboardInterrupt):
        T.Model(config, task, _context(tmp_path)).fit(texts[:60], Y[:60], valid=(texts[60:], Y[60:]))
    checkpoint = tmp_path / "fold-0" / "checkpoint" / "checkpoint-4"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "optimizer.pt").is_file()

    logs = []
    resumed = T.Model(config, task, _context(tmp_path, logs)).fit(texts[:60], Y[:60], valid=(texts[60:], Y[60:]))
    assert any("resuming from checkpoint-4 (step 4)" in m for m in logs)
    assert [h["step"] for h in resumed.history_] == [h["step"] for h in reference.history_]
    np.testing.assert_allclose(resumed.predict_proba(texts[60:]), reference.predict_proba(texts[60:]), atol=1e-5)
    assert not (tmp_path / "fold-0" / "checkpoint").exists()  # removed once the fold is fitted


def test_save_load_round_trip_gives_identical_probabilities(roberta_dir, tmp_path):
    texts, Y = synthetic(60, "multiclass", seed=6)
    task = TaskInfo("multiclass", CLASSES)
    config = _config(roberta_dir, epochs=1)
    model = T.Model(config, task, _context(tmp_path)).fit(texts[:40], Y[:40], valid=(texts[40:], Y[40:]))
    P = model.predict_proba(texts[40:])
    model.save(tmp_path / "model")
    loaded = T.Model.load(tmp_path / "model", config, task, _context(tmp_path))
    assert loaded.max_length_ == model.max_length_
    np.testing.assert_array_equal(loaded.predict_proba(texts[40:]), P)


def test_tokenised_once_for_all_folds(bert_dir, tmp_path):
    texts, Y = synthetic(40, "multilabel", seed=7)
    task = TaskInfo("multilabel", CLASSES)
    config = _config(bert_dir, epochs=1)
    T.Model(config, task, _context(tmp_path)).fit(texts[:30], Y[:30], valid=(texts[30:], Y[30:]))
    shards = sorted((tmp_path / ".cache" / "tokens").rglob("shard-*.npz"))
    assert shards  # the token ids of all 40 texts are cached
    cache.TextCache.forget()  # as if a new process ran the next fold
    model = T.Model(config, task, _context(tmp_path, fold=1)).fit(texts[10:], Y[10:], valid=(texts[:10], Y[:10]))
    assert model.predict_proba(texts[:10]).shape == (10, 4)
    # a shard is written only for texts that had to be tokenised: none were
    assert sorted((tmp_path / ".cache" / "tokens").rglob("shard-*.npz")) == shards


# ---- bad input ------------------------------------------------------------------------------------
def test_long_texts_are_truncated_and_counted(bert_dir, tmp_path):
    texts, Y = synthetic(30, "multilabel", seed=8)
    texts[0] = "happy " * 200
    logs = []
    # also exercises the optional training settings: each must at least run
    options = dict(
        gradient_checkpointing=True,
        layer_lr_decay=0.8,
        scheduler="cosine",
        class_weights="balanced",
        gamma=2.0,
    )
    model = T.Model(
        _config(bert_dir, epochs=1, max_length=16, **options),
        TaskInfo("multilabel", CLASSES),
        _context(tmp_path, logs),
    )
    model.fit(texts, Y)
    n_long = sum(len(t.split()) + 2 > 16 for t in texts)
    assert any(f"train: {n_long} of 30 texts are longer than max_length=16" in m for m in logs)
    assert model.predict_proba(["sad " * 300]).shape == (1, 4)


def test_max_length_beyond_the_backbone_is_refused(bert_dir, tmp_path):
    texts, Y = synthetic(20, "multilabel", seed=9)
    model = T.Model(_config(bert_dir, max_length=4096), TaskInfo("multilabel", CLASSES), _context(tmp_path))
    with pytest.raises(ConfigError, match=r"max_length 4096 exceeds what backbone .* accepts \(128 tokens\)"):
        model.fit(texts, Y)


def test_out_of_memory_names_the_settings_to_lower(bert_dir, tmp_path, monkeypatch):
    import torch

    texts, Y = synthetic(20, "multilabel", seed=10)

    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(CompTrainer, "training_step", oom)
    model = T.Model(_config(bert_dir, epochs=1), TaskInfo("multilabel", CLASSES), _context(tmp_path))
    with pytest.raises(
        ConfigError,
        match=r"out of GPU memory .*batch_size=8.*lower batch_size.*max_length.*gradient_checkpointing",
    ):
        model.fit(texts, Y)


def test_unloadable_backbone_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    model = T.Model(_config("someone/not-downloaded"), TaskInfo("multilabel", CLASSES), _context(tmp_path))
    with pytest.raises(ConfigError, match="huggingface-cli download someone/not-downloaded"):
        model.fit(["a"], np.zeros((1, 4)))


def test_config_checks():
    with pytest.raises(ConfigError, match="backbone is empty"):
        build(T.Config, {"model": "transformer"}, "x.yaml")
    with pytest.raises(ConfigError, match="max_length must be a number of tokens or auto"):
        build(T.Config, {"model": "transformer", "backbone": "b", "max_length": "long"}, "x.yaml")
    with pytest.raises(ConfigError, match="min_epochs must be between 0 and epochs"):
        build(T.Config, {"model": "transformer", "backbone": "b", "epochs": 2, "min_epochs": 3}, "x.yaml")


def test_predict_run_with_saved_fold_models_matches_the_run(bert_dir, tmp_path):
    from comp.predict import predict_run
    from comp.runs import load_run
    from comp.train import train
    from tests.helpers import make_workspace

    ws = make_workspace(tmp_path, "multiclass", train_rows=60, test_rows=20)
    (ws.configs_dir / "tiny.yaml").write_text(
        f"model: transformer\nbackbone: {bert_dir}\nepochs: 1\nbatch_size: 16\nlr: 1.0e-3\nsave_models: true\n"
    )
    train(ws, ws.configs_dir / "tiny.yaml", n_folds=2)
    run = load_run(ws, "tiny")
    frame = predict_run(ws.root, "tiny", ws.test_csv)
    assert list(frame.columns) == ["id", *run.classes] and frame["id"].tolist() == run.test_ids
    np.testing.assert_allclose(frame[run.classes].to_numpy(), run.test, atol=1e-6)
    # the fold models' tokenizer copies share one token cache (the backbone's own is the other)
    assert len(list((ws.cache_dir / "tokens").iterdir())) <= 2

    (ws.configs_dir / "nosave.yaml").write_text(f"model: transformer\nbackbone: {bert_dir}\nepochs: 1\n")
    train(ws, ws.configs_dir / "nosave.yaml", n_folds=2)
    with pytest.raises(RunError, match=r"run 'nosave' has no saved model for fold\(s\) 0, 1 .*save_models: true"):
        predict_run(ws, "nosave", ws.test_csv)


@pytest.mark.parametrize("name", ["distilroberta-base", "roberta-base", "deberta-v3-base", "minilm-finetune"])
def test_shipped_configs_load(name):
    config = load_model_config(REPO / "comp" / "configs" / f"{name}.yaml")
    assert isinstance(config, T.Config) and config.backbone


def test_report_to_names_an_unknown_tracker():
    with pytest.raises(ConfigError, match=r"report_to 'neptune' is not one of tensorboard, wandb, mlflow"):
        build(T.Config, {"backbone": "x", "report_to": ["neptune"]}, "m.yaml")


def test_each_epoch_is_reported_to_a_tuner_which_can_stop_the_fold(bert_dir, tmp_path):
    """The per-epoch pruning hook of `comp tune` (FoldContext.on_epoch)."""
    import optuna

    texts, Y = synthetic(60, "multilabel", seed=2)
    task = TaskInfo("multilabel", CLASSES)
    config = _config(bert_dir, epochs=2, batch_size=16)
    seen = []
    context = _context(tmp_path / "all")
    context.on_epoch = lambda epoch, value: seen.append((epoch, value))
    model = T.Model(config, task, context).fit(texts[:40], Y[:40], valid=(texts[40:], Y[40:]))
    assert [e for e, _ in seen] == [h["epoch"] for h in model.history_] == [1.0, 2.0]
    assert [v for _, v in seen] == [h["score"] for h in model.history_]

    def prune(epoch, value):
        raise optuna.TrialPruned()

    context = _context(tmp_path / "pruned")
    context.on_epoch = prune
    with pytest.raises(optuna.TrialPruned):
        T.Model(config, task, context).fit(texts[:40], Y[:40], valid=(texts[40:], Y[40:]))


def test_the_transformer_family_trains_on_soft_targets_and_row_weights(bert_dir, tmp_path, monkeypatch):
    """The seam comp.second_stage uses in the transformer family: soft targets and sample_weight
    reach comp's loss, row for row (the fold loop's part is the same as the linear families')."""
    seen = []
    original = losses.Loss.__call__

    def spy(self, logits, targets, sample_weight=None):
        seen.append((targets.detach().numpy().copy(), None if sample_weight is None else sample_weight.numpy().copy()))
        return original(self, logits, targets, sample_weight)

    monkeypatch.setattr(losses.Loss, "__call__", spy)
    texts, Y = synthetic(24, "multiclass", seed=2)
    soft = 0.7 * Y + 0.3 * np.random.default_rng(0).dirichlet(np.ones(Y.shape[1]), len(Y))  # distinct rows
    weight = np.where(np.arange(24) < 16, 1.0, 0.25)  # the last 8 play pseudo rows
    config = _config(bert_dir, epochs=1, max_length=16)
    T.Model(config, TaskInfo("multiclass", CLASSES), _context(tmp_path)).fit(texts, soft, sample_weight=weight)
    targets = np.concatenate([t for t, _ in seen])
    weights = np.concatenate([w for _, w in seen])
    assert len(weights) == 24 and sorted(set(np.round(weights, 4))) == [0.25, 1.0]
    # each row's target arrives with its own weight (the Trainer shuffles the rows)
    rows = [int(np.abs(soft - t).sum(axis=1).argmin()) for t in targets]
    assert sorted(rows) == list(range(24))
    np.testing.assert_allclose(targets, soft[rows], atol=1e-6)  # float32 of the soft targets
    np.testing.assert_array_equal(weights, weight[rows])
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
