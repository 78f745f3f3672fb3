"""Decoder LLMs in the transformer family: LoRA / IA3 / 4-bit on tiny random Llama and Qwen2 (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from comp.config import build
from comp.errors import ConfigError
from comp.models import load_model_config
from comp.models import transformer as T
from comp.models.base import TaskInfo
from comp.models.hf import classifier, device, strategies
from comp.models.hf.checks import validation_score
from comp.models.hf.tokens import PromptTemplate
from tests.tiny_models import CLASSES, crash_at_training_step, fold_context, make_decoder, synthetic

REPO = Path(__file__).resolve().parents[1]
FAST = {"lr": 3e-3, "batch_size": 8, "eval_batch_size": 16, "epochs": 4, "patience": 0, "max_length": 32}
LORA = {"method": "lora", "r": 16, "alpha": 32}
TASK = TaskInfo("multilabel", CLASSES)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one thread is ~10x faster than two fighting over contended cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return make_decoder(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return make_decoder(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


def _config(backbone, **kw):
    return build(T.Config, {"model": "transformer", "backbone": str(backbone), **{**FAST, **kw}}, "test")


_context = fold_context


def _untrained(config, tmp_path, max_length=32):
    """A Model with its adapter built but not trained (as ``fit`` builds it)."""
    return T.Model(config, TASK, _context(tmp_path)).build(max_length)


def _trainable(model) -> list[str]:
    return [name for name, p in model.model_.named_parameters() if p.requires_grad]


def _prior_score(Y_train, Y_valid):
    return validation_score(np.tile(Y_train.mean(0), (len(Y_valid), 1)), Y_valid, TASK)[0]


@pytest.fixture(scope="module")
def lora_fit(llama_dir, tmp_path_factory):
    texts, Y = synthetic(160, "multilabel", seed=1)
    tmp = tmp_path_factory.mktemp("lora-fit")
    model = T.Model(_config(llama_dir, peft=LORA), TASK, _context(tmp))
    model.fit(texts[:120], Y[:120], valid=(texts[120:], Y[120:]))
    return model, texts, Y


# ---- LoRA ---------------------------------------------------------------------------------------
def test_lora_trains_only_adapter_and_head(lora_fit):
    model, _, _ = lora_fit
    names = _trainable(model)
    assert names and all(".lora_A." in n or ".lora_B." in n or ".score.modules_to_save." in n for n in names)
    assert any(".score.modules_to_save." in n for n in names)  # the new head trains with the adapter
    # all-linear: every projection of every layer has an adapter
    for proj in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert sum(f".{proj}.lora_A." in n for n in names) == 2  # one per layer
    total = sum(p.numel() for p in model.model_.parameters())
    trained = sum(p.numel() for p in model.model_.parameters() if p.requires_grad)
    assert trained < 0.5 * total
    assert model.config.gradient_checkpointing is True  # on by default with peft
    assert model.saves_adapter


def test_lora_loss_falls_and_beats_the_prior(lora_fit):
    model, texts, Y = lora_fit
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0] - 0.05
    P = model.predict_proba(texts[120:])
    assert P.shape == (40, 4) and np.all((P >= 0) & (P <= 1))
    assert validation_score(P, Y[120:], TASK)[0] == pytest.approx(model.best_score_)  # best weights restored
    assert model.best_score_ > _prior_score(Y[:120], Y[120:]) + 0.04


def test_lora_adapter_round_trip_reproduces_the_logits(llama_dir, tmp_path):
    texts, _ = synthetic(30, "multilabel", seed=2)
    config = _config(llama_dir, peft={**LORA, "init": False})  # random B: the adapter changes the output
    model = _untrained(config, tmp_path)
    P = model.predict_proba(texts)
    with model.model_.disable_adapter():
        without_adapter = model.predict_proba(texts)
    assert np.abs(P - without_adapter).max() > 1e-3

    model.save(tmp_path / "adapter")
    saved = sorted(p.name for p in (tmp_path / "adapter").iterdir())
    assert "adapter_config.json" in saved and "adapter_model.safetensors" in saved
    assert not any(name.startswith("model") for name in saved)  # no copy of the base weights
    from safetensors import safe_open

    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as fh:
        keys = list(fh.keys())
    assert keys and all("lora_" in k or "score" in k for k in keys) and any("score" in k for k in keys)
    adapter_config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(llama_dir)
    assert adapter_config["task_type"] == "SEQ_CLS"

    loaded = T.Model.load(tmp_path / "adapter", config, TASK, _context(tmp_path))
    np.testing.assert_allclose(loaded.predict_proba(texts), P, atol=1e-6)


# ---- IA3 ----------------------------------------------------------------------------------------
def test_ia3_on_qwen2_trains_only_its_vectors_and_head(qwen_dir, tmp_path):
    texts, Y = synthetic(160, "multilabel", seed=3)
    config = _config(qwen_dir, peft={"method": "ia3", "init": False}, lr=2e-2)
    model = T.Model(config, TASK, _context(tmp_path)).fit(texts[:120], Y[:120], valid=(texts[120:], Y[120:]))
    names = _trainable(model)
    assert names and all(".ia3_l." in n or ".score.modules_to_save." in n for n in names)
    # peft's IA3 defaults for Qwen2: q_proj, v_proj and down_proj
    assert {n.split(".")[-3] for n in names if ".ia3_l." in n} == {"q_proj", "v_proj", "down_proj"}
    losses = [h["loss"] for h in model.history_]
    assert losses[-1] < losses[0]
    P = model.predict_proba(texts[120:])
    model.save(tmp_path / "ia3")
    loaded = T.Model.load(tmp_path / "ia3", config, TASK, _context(tmp_path))
    np.testing.assert_allclose(loaded.predict_proba(texts[120:]), P, atol=1e-6)
    with loaded.model_.disable_adapter():  # the IA3 vectors (random at init, then trained) matter
        assert np.abs(loaded.predict_proba(texts[120:]) - P).max() > 1e-3


# ---- padding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_padded_and_unpadded_rows_give_the_same_logits(kind, llama_dir, qwen_dir, tmp_path):
    import torch

    backbone = llama_dir if kind == "llama" else qwen_dir
    model = _untrained(_config(backbone, peft={**LORA, "init": False}), tmp_path)
    tokenizer = model.tokenizer_
    # Llama has no pad token: its EOS pads; Qwen2 has its own
    assert tokenizer.pad_token == ("</s>" if kind == "llama" else "<|endoftext|>")
    assert tokenizer.padding_side == "right"
    assert model.model_.config.pad_token_id == tokenizer.pad_token_id

    texts, _ = synthetic(24, "multilabel", seed=4)
    batched = model.predict_proba(texts)  # length-sorted batches of 16, right-padded
    model.config.eval_batch_size = 1  # every row alone: no padding
    np.testing.assert_allclose(batched, model.predict_proba(texts), atol=1e-5)
    assert len({round(float(p), 5) for p in batched[:, 0]}) > 10  # rows differ, so pooling matters

    # the same through the model's own forward, padding a short row to a long one's width
    stored, _ = model.tokens_.encode(["happy", "the sad game on a rainy monday night"])
    ids = [torch.tensor(model.tokens_.truncate(r, 32)) for r in stored]
    width = max(len(r) for r in ids)
    padded = torch.full((2, width), tokenizer.pad_token_id)
    mask = torch.zeros((2, width), dtype=torch.long)
    for i, r in enumerate(ids):
        padded[i, : len(r)], mask[i, : len(r)] = r, 1
    net = model.model_.eval()
    with torch.no_grad():
        together = net(input_ids=padded, attention_mask=mask).logits
        alone = torch.cat([net(input_ids=r[None], attention_mask=torch.ones_like(r)[None]).logits for r in ids])
    assert len(ids[0]) < width
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_prompt_template_wraps_texts_and_truncation_keeps_its_tail(llama_dir, tmp_path):
    template = "Tweet: {text}\nEmotions:"
    assert PromptTemplate(template).apply(["so happy"]) == ["Tweet: so happy\nEmotions:"]
    model = _untrained(_config(llama_dir, peft=LORA, prompt_template=template), tmp_path, max_length=24)
    stored, lengths = model.tokens_.encode(["so happy", "sad " * 50])
    short, long = (model.tokens_.truncate(r, 24) for r in stored)
    decode = model.tokenizer_.decode
    assert decode(short) == "<s>Tweet: so happy\nEmotions:" and lengths[1] > 24
    assert len(long) == 24 and decode(long).startswith("<s>Tweet: sad") and decode(long).endswith("sad\nEmotions:")


# ---- quantisation -------------------------------------------------------------------------------
def test_4bit_without_usable_bitsandbytes_fails_before_loading(llama_dir, tmp_path, monkeypatch):
    import sys

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(classifier, "load_pretrained", no_loading)
    config = _config(llama_dir, peft=LORA, quantization="4bit")
    texts, Y = synthetic(10, "multilabel", seed=5)

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    with pytest.raises(
        ConfigError, match=r"quantization: 4bit needs bitsandbytes, which cannot be imported .*set quantization: none"
    ):
        T.Model(config, TASK, _context(tmp_path)).fit(texts, Y)

    import types

    cuda_only = types.SimpleNamespace(supported_torch_devices={"cuda"}, __version__="0.0-test")
    monkeypatch.setitem(sys.modules, "bitsandbytes", cuda_only)
    with pytest.raises(
        ConfigError,
        match=r"needs bitsandbytes' quantised layers on cpu, .*\(it supports: cuda\); set quantization: none",
    ):
        T.Model(config, TASK, _context(tmp_path)).fit(texts, Y)


@pytest.mark.parametrize("bits", ["4bit", "8bit"])
def test_quantised_lora_on_cpu_when_bitsandbytes_has_cpu_kernels(bits, llama_dir, tmp_path):
    import torch

    try:
        device.check_quantization(bits, torch.device("cpu"))
    except ConfigError as exc:
        pytest.skip(str(exc))
    import bitsandbytes as bnb

    texts, Y = synthetic(60, "multilabel", seed=6)
    config = _config(llama_dir, peft={**LORA, "init": False}, quantization=bits, epochs=1, batch_size=16)
    model = T.Model(config, TASK, _context(tmp_path)).fit(texts[:40], Y[:40], valid=(texts[40:], Y[40:]))
    kind = bnb.nn.Linear4bit if bits == "4bit" else bnb.nn.Linear8bitLt
    layers = [m for m in model.model_.modules() if isinstance(m, kind)]
    assert len(layers) == 14  # 7 projections x 2 layers hold quantised weights; the head does not
    if bits == "4bit":
        assert all(m.weight.quant_type == "nf4" for m in layers)
    assert _trainable(model) and all(".lora_" in n or ".score.modules_to_save." in n for n in _trainable(model))
    P = model.predict_proba(texts[40:])
    model.save(tmp_path / "qlora")
    # saving must not change the model that predicted (bitsandbytes' bf16 CPU repacking is undone lossily)
    np.testing.assert_allclose(model.predict_proba(texts[40:]), P, atol=1e-6)
    loaded = T.Model.load(tmp_path / "qlora", config, TASK, _context(tmp_path))
    if bits == "4bit":  # the exact path on every CPU, with or without AVX512-BF16
        assert not any(m.support_avx512bf16_for_cpu for m in loaded.model_.modules() if isinstance(m, kind))
    np.testing.assert_allclose(loaded.predict_proba(texts[40:]), P, atol=1e-6)


def test_quantised_base_is_frozen_with_fp32_norms_and_unwidened_embeddings(llama_dir):
    import torch
    from transformers import AutoModelForSequenceClassification

    net = AutoModelForSequenceClassification.from_pretrained(str(llama_dir), num_labels=4, dtype=torch.bfloat16)
    net = strategies.freeze_quantized(net)
    assert not any(p.requires_grad for p in net.parameters())
    assert net.model.embed_tokens.weight.dtype == torch.bfloat16  # frozen and large: no fp32 copy
    assert net.model.norm.weight.dtype == torch.float32
    assert net.model.layers[0].input_layernorm.weight.dtype == torch.float32


@pytest.mark.gpu
def test_one_qlora_step_on_cuda(llama_dir, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    import bitsandbytes as bnb

    texts, Y = synthetic(32, "multilabel", seed=7)
    config = _config(llama_dir, peft=LORA, quantization="4bit", epochs=1, batch_size=32, device="cuda")
    model = T.Model(config, TASK, _context(tmp_path)).fit(texts, Y)
    assert model.precision_ in ("bf16", "fp16")
    assert any(isinstance(m, bnb.nn.Linear4bit) and m.weight.device.type == "cuda" for m in model.model_.modules())
    assert model.history_ == [] and model.predict_proba(texts).shape == (32, 4)


# ---- the loop: resume, --fold sharding, predict ---------------------------------------------------
def test_lora_resume_after_a_crash_continues_from_the_adapter_checkpoint(llama_dir, tmp_path):
    texts, Y = synthetic(80, "multilabel", seed=8)
    config = _config(llama_dir, peft=LORA, epochs=3, checkpoint_every=4, batch_size=16, eval_every=4)
    reference = T.Model(config, TASK, _context(tmp_path / "ref")).fit(texts[:60], Y[:60], valid=(texts[60:], Y[60:]))

    with crash_at_training_step(7), pytest.raises(KeyboardInterrupt):
        T.Model(config, TASK, _context(tmp_path)).fit(texts[:60], Y[:60], valid=(texts[60:], Y[60:]))
    checkpoint = tmp_path / "fold-0" / "checkpoint" / "checkpoint-4"
    assert (checkpoint / "adapter_model.safetensors").is_file()  # the Trainer checkpoints only the adapter
    assert not (checkpoint / "model.safetensors").exists()

    logs = []
    resumed = T.Model(config, TASK, _context(tmp_path, logs)).fit(texts[:60], Y[:60], valid=(texts[60:], Y[60:]))
    assert any("resuming from checkpoint-4 (step 4)" in m for m in logs)
    assert [h["step"] for h in resumed.history_] == [h["step"] for h in reference.history_]
    np.testing.assert_allclose(resumed.predict_proba(texts[60:]), reference.predict_proba(texts[60:]), atol=1e-5)


def test_fold_sharded_run_saves_adapters_and_predict_reloads_them(llama_dir, tmp_path):
    from comp.predict import predict_run, saved_model_dir
    from comp.runs import load_run
    from comp.train import train
    from tests.helpers import make_workspace

    ws = make_workspace(tmp_path, "multiclass", train_rows=60, test_rows=20)
    (ws.configs_dir / "tiny-lora.yaml").write_text(
        f"model: transformer\nbackbone: {llama_dir}\nepochs: 1\nbatch_size: 16\nlr: 3.0e-3\nmax_length: 32\n"
        "peft: {method: lora, r: 4, alpha: 8}\nprompt_template: 'Text: {text}\\nLabel:'\nsave_models: true\n"
    )
    first = train(ws, ws.configs_dir / "tiny-lora.yaml", n_folds=2, only_fold=0)
    assert first.trained == [0] and first.pending == [1] and first.scores is None
    second = train(ws, ws.configs_dir / "tiny-lora.yaml", n_folds=2, only_fold=1)
    assert second.trained == [1] and second.pending == [] and second.scores is not None

    run = load_run(ws, "tiny-lora")
    paths = ws.run("tiny-lora")
    for k in (0, 1):
        saved = saved_model_dir(paths, k)
        names = {p.name for p in saved.iterdir()}
        assert {"adapter_config.json", "adapter_model.safetensors"} <= names
        assert not any(n.startswith("model") or n.startswith("tokenizer") for n in names)
    frame = predict_run(ws.root, "tiny-lora", ws.test_csv)
    assert list(frame.columns) == ["id", *run.classes] and frame["id"].tolist() == run.test_ids
    np.testing.assert_allclose(frame[run.classes].to_numpy(), run.test, atol=1e-6)


# ---- configs ------------------------------------------------------------------------------------
def test_decoder_config_checks():
    base = {"model": "transformer", "backbone": "b"}
    with pytest.raises(ConfigError, match=r"prompt_template must contain \{text\} exactly once"):
        build(T.Config, {**base, "prompt_template": "Tweet:"}, "x.yaml")
    with pytest.raises(ConfigError, match="quantization: 4bit freezes .* add peft: {method: lora}"):
        build(T.Config, {**base, "quantization": "4bit"}, "x.yaml")
    with pytest.raises(ConfigError, match="quantization: '3bit' is not one of none, 8bit, 4bit"):
        build(T.Config, {**base, "quantization": "3bit"}, "x.yaml")
    with pytest.raises(ConfigError, match="x.yaml: peft method must be a name"):
        build(T.Config, {**base, "peft": {"method": 3}}, "x.yaml")
    assert build(T.Config, base, "x.yaml").gradient_checkpointing is False
    assert build(T.Config, {**base, "peft": {}}, "x.yaml").gradient_checkpointing is True
    assert (
        build(T.Config, {**base, "peft": {}, "gradient_checkpointing": False}, "x.yaml").gradient_checkpointing is False
    )


def test_peft_target_that_matches_nothing_names_the_layers(llama_dir, tmp_path):
    config = _config(llama_dir, peft={**LORA, "target_modules": ["query"]})
    with pytest.raises(ConfigError, match=r"peft lora cannot be applied .*linear layers are named: .*q_proj"):
        _untrained(config, tmp_path)


@pytest.mark.parametrize("path", sorted((REPO / "comp" / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads(path):
    config = load_model_config(path)
    assert config.model
    if config.model == "transformer" and path.stem.endswith(("-lora", "-qlora")):
        assert config.peft is not None and config.peft["method"] == "lora" and config.prompt_template
        assert config.quantization == ("4bit" if path.stem.endswith("-qlora") else "none")
