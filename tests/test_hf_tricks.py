"""The competition toolkit on tiny random BERTs: each trick changes training, and saves what it should."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from comp.config import build
from comp.errors import ConfigError
from comp.models import transformer as T
from comp.models.base import TaskInfo
from comp.models.hf.heads import PooledClassifier
from comp.models.hf.tokens import TokenIds
from comp.models.hf.tricks.average import EMA, SWA, EMASettings, SWASettings
from comp.models.hf.tricks.awp import AWP, AWPSettings
from comp.models.hf.tricks.fgm import FGM, FGMSettings
from tests.tiny_models import CLASSES, FILLER, crash_at_training_step, fold_context, make_backbone, synthetic

FAST = {"lr": 3e-3, "batch_size": 8, "eval_batch_size": 16, "epochs": 2, "patience": 0, "max_length": 32}
TASK = TaskInfo("multilabel", CLASSES)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one thread is much faster than two fighting over contended cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="module")
def data():
    return synthetic(80, "multilabel", seed=11)


def _config(backbone, **kw):
    return build(T.Config, {"model": "transformer", "backbone": str(backbone), **{**FAST, **kw}}, "test")


def _fit(bert_dir, tmp_path, data, valid=True, logs=None, **kw):
    texts, Y = data
    model = T.Model(_config(bert_dir, **kw), TASK, fold_context(tmp_path, logs))
    return model.fit(texts[:60], Y[:60], valid=(texts[60:], Y[60:]) if valid else None)


def _trainable(model) -> dict:
    return {n: p.detach().clone() for n, p in model.model_.named_parameters() if p.requires_grad}


class _FakeTrainer:
    """What an adversarial trick uses of the Trainer: the epoch and one more backward pass."""

    def __init__(self, model, epoch=1.0, seen=None):
        self.state = types.SimpleNamespace(epoch=epoch)
        self.accelerator = types.SimpleNamespace(unwrap_model=lambda m: m)
        self.model, self.seen, self.calls = model, seen, 0

    def extra_backward(self, model, inputs):
        self.calls += 1
        if self.seen is not None:
            self.seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
        model(**inputs).logits.sum().backward()


def _backward(model, inputs):
    model.zero_grad()
    model(**inputs).logits.sum().backward()


@pytest.fixture
def net(bert_dir):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(bert_dir), num_labels=4)
    inputs = {"input_ids": torch.randint(5, 100, (4, 9)), "attention_mask": torch.ones(4, 9, dtype=torch.long)}
    return model, inputs


# ---- AWP -----------------------------------------------------------------------------------------
def test_awp_perturbs_within_its_bound_and_restores_exactly(net):
    model, inputs = net
    _backward(model, inputs)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    clean_grad = model.classifier.weight.grad.clone()
    seen = []
    awp = AWP(AWPSettings(lr=1.0, eps=0.05, start_epoch=1))
    awp.after_backward(_FakeTrainer(model, epoch=1.0, seen=seen), model, inputs)
    perturbed = seen[0]
    moved = [n for n in before if "weight" in n and not torch.equal(perturbed[n], before[n])]
    assert moved and all("bias" not in n for n in moved)  # param: weight
    for n in moved:  # never more than eps x |w| per element
        assert torch.all((perturbed[n] - before[n]).abs() <= 0.05 * before[n].abs() + 1e-7)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())  # put back exactly
    assert not torch.equal(model.classifier.weight.grad, clean_grad)  # the adversarial gradient was added
    assert awp.attacks == 1
    AWP(AWPSettings(start_epoch=2)).after_backward(trainer := _FakeTrainer(model, epoch=1.5), model, inputs)
    assert trainer.calls == 0  # not before start_epoch


def test_awp_changes_training_from_its_start_epoch(bert_dir, tmp_path, data):
    plain = _fit(bert_dir, tmp_path / "plain", data, valid=False)
    awp = _fit(bert_dir, tmp_path / "awp", data, valid=False, awp={"lr": 1.0, "eps": 0.05, "start_epoch": 1})
    assert awp.tricks_[0].attacks == 8  # 60 rows / batch 8 = 8 steps in epoch 2, none in epoch 1
    assert np.abs(awp.predict_proba(data[0][60:]) - plain.predict_proba(data[0][60:])).max() > 1e-4


# ---- FGM -----------------------------------------------------------------------------------------
def test_fgm_moves_only_the_batch_embeddings_by_epsilon_and_restores_them(net):
    model, inputs = net
    _backward(model, inputs)
    embeddings = model.get_input_embeddings().weight
    before = embeddings.detach().clone()
    seen = []
    FGM(FGMSettings(epsilon=0.5)).after_backward(_FakeTrainer(model, seen=seen), model, inputs)
    delta = seen[0]["bert.embeddings.word_embeddings.weight"] - before
    changed = torch.nonzero(delta.abs().sum(-1)).squeeze(-1)
    assert set(changed.tolist()) <= set(inputs["input_ids"].unique().tolist())
    assert float(torch.linalg.vector_norm(delta)) == pytest.approx(0.5, rel=1e-4)
    assert torch.equal(embeddings, before)


def test_fgm_changes_training_and_needs_trainable_embeddings(bert_dir, tmp_path, data):
    plain = _fit(bert_dir, tmp_path / "plain", data, valid=False)
    fgm = _fit(bert_dir, tmp_path / "fgm", data, valid=False, fgm={"epsilon": 1.0})
    assert fgm.tricks_[0].attacks == 16
    assert np.abs(fgm.predict_proba(data[0][60:]) - plain.predict_proba(data[0][60:])).max() > 1e-4
    with pytest.raises(ConfigError, match="fgm perturbs the word embeddings, which freeze.embeddings keeps fixed"):
        _config(bert_dir, fgm={}, freeze={"embeddings": True})
    with pytest.raises(ConfigError, match="fgm changes the backbone's own weights, which an adapter keeps frozen"):
        _config(bert_dir, fgm={}, peft={"method": "lora"})


# ---- EMA and SWA ---------------------------------------------------------------------------------
def test_weight_average_is_what_evaluation_sees_and_training_is_not():
    layer = torch.nn.Linear(3, 2)
    ema = EMA(EMASettings(decay=0.5))
    ema.add(layer, 1.0)
    first = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema.add(layer, 0.5)
    np.testing.assert_allclose(ema.average["weight"], first + 0.5, rtol=1e-6)
    with ema.eval_weights(layer):
        np.testing.assert_allclose(layer.weight.detach(), first + 0.5, rtol=1e-6)
    np.testing.assert_allclose(layer.weight.detach(), first + 1.0, rtol=1e-6)  # raw weights again


def test_ema_weights_are_the_model_that_predicts_and_is_saved(bert_dir, tmp_path, data):
    from safetensors.torch import load_file

    plain = _fit(bert_dir, tmp_path / "plain", data, valid=False)
    model = _fit(bert_dir, tmp_path / "ema", data, valid=False, ema={"decay": 0.9})
    ema = model.tricks_[0]
    assert ema.count == 16  # one update per optimizer step
    final = _trainable(model)
    assert ema.average and all(
        torch.equal(final[n], ema.average[n]) for n in ema.average
    )  # the average, not the raw weights
    raw = _trainable(plain)  # same seed and batches: the raw trajectory without averaging
    assert max(float((final[n] - raw[n]).abs().max()) for n in raw) > 1e-4
    model.save(tmp_path / "saved")
    saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert torch.equal(saved["classifier.weight"], ema.average["classifier.weight"])
    loaded = T.Model.load(tmp_path / "saved", model.config, TASK, fold_context(tmp_path))
    np.testing.assert_array_equal(loaded.predict_proba(data[0][60:]), model.predict_proba(data[0][60:]))


def test_ema_evaluations_and_the_best_checkpoint_use_the_average(bert_dir, tmp_path, data):
    model = _fit(bert_dir, tmp_path, data, ema={"decay": 0.9}, epochs=3)
    P = model.predict_proba(data[0][60:])
    from comp.models.hf.checks import validation_score

    # the restored best model is the EMA evaluated at that step: it reproduces the logged score
    assert validation_score(P, data[1][60:], TASK)[0] == pytest.approx(model.best_score_)


def test_ema_resumes_both_the_average_and_the_raw_weights(bert_dir, tmp_path, data):
    texts, Y = data
    config = _config(bert_dir, epochs=3, checkpoint_every=4, eval_every=4, batch_size=16, ema={"decay": 0.8})
    reference = T.Model(config, TASK, fold_context(tmp_path / "ref")).fit(
        texts[:60], Y[:60], valid=(texts[60:], Y[60:])
    )
    with crash_at_training_step(7), pytest.raises(KeyboardInterrupt):
        T.Model(config, TASK, fold_context(tmp_path)).fit(texts[:60], Y[:60], valid=(texts[60:], Y[60:]))
    assert (tmp_path / "fold-0" / "checkpoint" / "checkpoint-4" / "comp_raw_weights.safetensors").is_file()
    resumed = T.Model(config, TASK, fold_context(tmp_path)).fit(texts[:60], Y[:60], valid=(texts[60:], Y[60:]))
    assert [h["score"] for h in resumed.history_] == pytest.approx([h["score"] for h in reference.history_])
    np.testing.assert_allclose(resumed.predict_proba(texts[60:]), reference.predict_proba(texts[60:]), atol=1e-5)


def test_swa_averages_the_epoch_end_weights_from_its_start(bert_dir, tmp_path, data):
    model = _fit(bert_dir, tmp_path, data, valid=False, epochs=3, swa={"start_epoch": 2})
    swa = model.tricks_[0]
    assert isinstance(swa, SWA) and swa.count == 2  # the ends of epochs 2 and 3
    final = _trainable(model)
    assert swa.average and all(torch.equal(final[n], swa.average[n]) for n in swa.average)
    with pytest.raises(ConfigError, match="ema and swa are two weight averages; keep one"):
        _config(bert_dir, ema={}, swa={})
    with pytest.raises(ConfigError, match="swa start_epoch must be >= 0"):
        build(SWASettings, {"start_epoch": -1}, "swa")


# ---- freezing and re-initialising ----------------------------------------------------------------
def test_freezing_keeps_the_embeddings_and_bottom_layers_as_pretrained(bert_dir, tmp_path, data):
    from transformers import AutoModel

    logs = []
    model = _fit(bert_dir, tmp_path, data, valid=False, logs=logs, freeze={"embeddings": True, "layers": 1})
    pretrained = dict(AutoModel.from_pretrained(str(bert_dir)).named_parameters())
    trained = dict(model.model_.named_parameters())
    for name, value in pretrained.items():
        after = trained[f"bert.{name}"]
        same = torch.equal(after, value)
        frozen = name.startswith("embeddings.") or name.startswith("encoder.layer.0.")
        assert after.requires_grad is not frozen
        if name.startswith(("embeddings.", "encoder.")):
            assert same is frozen, name
    assert any("froze the embeddings and the bottom 1 layers" in m for m in logs)
    with pytest.raises(ConfigError, match="freeze layers 5: the backbone has only 2 layers"):
        _fit(bert_dir, tmp_path / "x", data, valid=False, freeze={"layers": 5})


def test_reinit_replaces_only_the_top_layers(bert_dir, tmp_path):
    from transformers import AutoModel

    logs = []
    model = T.Model(_config(bert_dir, reinit_layers=1), TASK, fold_context(tmp_path, logs)).build(32)
    pretrained = dict(AutoModel.from_pretrained(str(bert_dir)).named_parameters())
    built = dict(model.model_.named_parameters())
    q = "encoder.layer.{}.attention.self.query.weight"
    assert torch.equal(built[f"bert.{q.format(0)}"], pretrained[q.format(0)])
    assert not torch.equal(built[f"bert.{q.format(1)}"], pretrained[q.format(1)])
    assert float(built[f"bert.{q.format(1)}"].detach().std()) == pytest.approx(0.02, rel=0.2)  # initializer_range
    assert any("re-initialised the top 1 of 2 layers" in m for m in logs)


# ---- heads: pooling and multi-sample dropout -----------------------------------------------------
@pytest.mark.parametrize("pooling", ["cls", "mean", "last", "concat4", "attention"])
def test_pooled_heads_ignore_padding(bert_dir, tmp_path, pooling):
    model = T.Model(_config(bert_dir, pooling=pooling), TASK, fold_context(tmp_path)).build(32)
    net = model.model_.eval()
    assert isinstance(net, PooledClassifier) and net.backbone.pooler is None
    short, long = torch.tensor([2, 17, 18, 3]), torch.tensor([2, 19, 20, 21, 22, 23, 3])
    padded = torch.zeros((2, 7), dtype=torch.long)
    padded[0, :4], padded[1] = short, long
    mask = (torch.arange(7)[None] < torch.tensor([[4], [7]])).long()
    with torch.no_grad():
        together = net(input_ids=padded, attention_mask=mask).logits
        alone = net(input_ids=short[None], attention_mask=torch.ones(1, 4, dtype=torch.long)).logits
    assert together.shape == (2, 4)
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)


def test_multi_sample_dropout_averages_k_masks_while_training_only(bert_dir, tmp_path):
    one = T.Model(_config(bert_dir, pooling="mean", head_dropout=0.5), TASK, fold_context(tmp_path)).build(32)
    many = T.Model(
        _config(bert_dir, pooling="mean", head_dropout=0.5, multi_sample_dropout=16), TASK, fold_context(tmp_path)
    ).build(32)
    ids = torch.randint(5, 100, (64, 6))
    many.model_.head.load_state_dict(one.model_.head.state_dict())
    with torch.no_grad():
        one.model_.eval(), many.model_.eval()
        torch.testing.assert_close(one.model_(input_ids=ids).logits, many.model_(input_ids=ids).logits)
        clean = one.model_(input_ids=ids).logits
        one.model_.train(), many.model_.train()
        torch.manual_seed(0)
        noise_one = (one.model_(input_ids=ids).logits - clean).std()
        noise_many = (many.model_(input_ids=ids).logits - clean).std()
    assert noise_many < 0.5 * noise_one  # the mean of 16 dropout samples is far less noisy
    with pytest.raises(ConfigError, match="multi_sample_dropout needs comp's pooled head; set pooling"):
        _config(bert_dir, multi_sample_dropout=4)


def test_pooled_head_trains_saves_and_loads(bert_dir, tmp_path, data):
    model = _fit(bert_dir, tmp_path, data, pooling="attention", multi_sample_dropout=4, epochs=3)
    assert model.history_[-1]["loss"] < model.history_[0]["loss"]
    P = model.predict_proba(data[0][60:])
    model.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "comp_head.safetensors").is_file()
    loaded = T.Model.load(tmp_path / "saved", model.config, TASK, fold_context(tmp_path))
    np.testing.assert_array_equal(loaded.predict_proba(data[0][60:]), P)


# ---- head + tail truncation ----------------------------------------------------------------------
def test_head_tail_truncation_keeps_the_first_and_last_tokens(bert_dir, tmp_path):
    from comp.models.hf.hub import load_tokenizer

    tokenizer = load_tokenizer(str(bert_dir))
    text = " ".join(["happy"] * 10 + ["the"] * 50 + ["sad", "cry", "tears"])
    head_only = TokenIds(tokenizer, str(bert_dir), None)
    head_tail = TokenIds(tokenizer, str(bert_dir), tmp_path, tail=3)
    for tokens in (head_only, head_tail):
        tokens.store_length = 40  # shorter than the text: the stored row keeps its first and last 40 ids
    (a,), _ = head_only.encode([text])
    (b,), (length,) = head_tail.encode([text])
    assert length == 65 and len(b) == 80
    decode = tokenizer.decode
    assert decode(head_only.truncate(a, 16)) == "[CLS] " + " ".join(["happy"] * 10 + ["the"] * 4) + " [SEP]"
    assert decode(head_tail.truncate(b, 16)) == "[CLS] " + " ".join(["happy"] * 10 + ["the"]) + " sad cry tears [SEP]"
    with pytest.raises(ConfigError, match="tail_tokens 3 leaves no room for the head of a text within max_length 5"):
        head_tail.check_tail(5)


def test_head_tail_truncation_lets_a_fold_see_cues_at_the_end(bert_dir, tmp_path):
    from comp.models.hf.checks import validation_score

    texts, Y = synthetic(160, "multilabel", seed=12)
    # the cue words sit at the end of long texts: truncating to the head hides them
    long_texts = [" ".join(["the"] * 30 + [w for w in t.split() if w not in FILLER]) for t in texts]
    scores = {}
    for tail in (0, 6):
        model = T.Model(
            _config(bert_dir, epochs=4, max_length=16, tail_tokens=tail), TASK, fold_context(tmp_path / str(tail))
        )
        model.fit(long_texts[:120], Y[:120])
        scores[tail] = validation_score(model.predict_proba(long_texts[120:]), Y[120:], TASK)[0]
    assert scores[6] > scores[0] + 0.1
