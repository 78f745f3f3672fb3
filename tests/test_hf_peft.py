"""Any peft method by name, and comp's bottleneck adapters, on tiny random BERTs (CPU, no downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from comp.config import build
from comp.errors import ConfigError
from comp.models import transformer as T
from comp.models.base import TaskInfo
from comp.models.hf import peft_methods
from tests.tiny_models import CLASSES, fold_context, make_backbone, synthetic

FAST = {"lr": 1e-2, "batch_size": 8, "eval_batch_size": 16, "epochs": 1, "patience": 0, "max_length": 32}
TASK = TaskInfo("multilabel", CLASSES)
QV = ["query", "value"]
# one or more methods of each peft family, with keys of their own config classes
METHODS = {
    "lora": ({"r": 4, "alpha": 8}, "lora_"),  # low-rank: LoRA and its relatives
    "adalora": ({"init_r": 6, "target_r": 2, "target_modules": QV}, ("lora_", "ranknum")),  # ranknum: its allocator's
    "loha": ({"r": 4, "target_modules": QV}, "hada_"),
    "lokr": ({"r": 4, "target_modules": QV}, "lokr_"),
    "vera": ({"r": 8, "target_modules": QV}, "vera_lambda"),
    "ia3": ({}, "ia3_l"),  # scaling vectors
    "oft": ({"oft_block_size": 8, "target_modules": QV}, "oft_"),  # orthogonal
    "boft": ({"boft_block_size": 4, "target_modules": QV}, "boft_"),
    "hra": ({"r": 4, "target_modules": QV}, "hra_"),  # Householder reflections
    "prompt_tuning": ({"num_virtual_tokens": 4}, "prompt_encoder"),  # prompt learning
    "p_tuning": ({"num_virtual_tokens": 4, "encoder_hidden_size": 16}, "prompt_encoder"),
    "bottleneck": ({"init_weights": False}, "bottleneck_"),  # comp's bottleneck adapters
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("tiny-bert"), "bert")


def _config(backbone, peft, **kw):
    return build(T.Config, {"model": "transformer", "backbone": str(backbone), "peft": peft, **{**FAST, **kw}}, "test")


@pytest.mark.parametrize("method", list(METHODS))
def test_each_peft_family_trains_only_its_adapter_and_round_trips(method, bert_dir, tmp_path):
    keys, markers = METHODS[method]
    markers = (markers,) if isinstance(markers, str) else markers

    def ours(name):
        return any(m in name for m in markers)

    config = _config(bert_dir, {"method": method, **keys})
    T.preflight(config, TASK)  # the keys are valid for this peft
    texts, Y = synthetic(60, "multilabel", seed=3)
    start = T.Model(config, TASK, fold_context(tmp_path / "start")).build(32)
    before = {n: p.detach().clone() for n, p in start.model_.named_parameters()}
    model = T.Model(config, TASK, fold_context(tmp_path)).fit(texts[:40], Y[:40], valid=(texts[40:], Y[40:]))
    after = dict(model.model_.named_parameters())
    trainable = [n for n, p in after.items() if p.requires_grad]
    adapter = [n for n in trainable if ours(n)]
    assert adapter and all(ours(n) or "classifier" in n for n in trainable)
    assert any(not torch.equal(after[n], before[n]) for n in adapter)  # the adapter trained
    frozen = [n for n in after if n not in trainable and n in before and not ours(n)]
    assert frozen and all(torch.equal(after[n], before[n]) for n in frozen)  # the base did not
    P = model.predict_proba(texts[40:])
    model.save(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == method.upper() and saved["base_model_name_or_path"] == str(bert_dir)
    assert not (tmp_path / "adapter" / "model.safetensors").exists()  # no copy of the base
    loaded = T.Model.load(tmp_path / "adapter", config, TASK, fold_context(tmp_path))
    np.testing.assert_allclose(loaded.predict_proba(texts[40:]), P, atol=1e-6)


def test_bottleneck_starts_as_the_identity_and_houlsby_adds_attention_adapters(bert_dir, tmp_path):
    pfeiffer = T.Model(_config(bert_dir, {"method": "bottleneck"}), TASK, fold_context(tmp_path)).build(32)
    houlsby = T.Model(
        _config(bert_dir, {"method": "bottleneck", "variant": "houlsby", "reduction_factor": 8}),
        TASK,
        fold_context(tmp_path),
    ).build(32)

    def adapted(model):
        return sorted({n.split(".bottleneck_")[0] for n, _ in model.model_.named_parameters() if ".bottleneck_" in n})

    assert [n.split("encoder.")[1] for n in adapted(pfeiffer)] == ["layer.0.output.dense", "layer.1.output.dense"]
    assert len(adapted(houlsby)) == 4 and any("attention.output.dense" in n for n in adapted(houlsby))
    down = dict(houlsby.model_.named_parameters())[adapted(houlsby)[0] + ".bottleneck_down.default.weight"]
    assert down.shape == (8, 64)  # hidden 64 / reduction_factor 8
    texts, _ = synthetic(20, "multilabel", seed=4)
    with pfeiffer.model_.disable_adapter():
        base = pfeiffer.predict_proba(texts)
    np.testing.assert_allclose(pfeiffer.predict_proba(texts), base, atol=1e-7)  # zero up-projection


@pytest.mark.parametrize(
    "extra",
    [
        {"peft": {"method": "bottleneck"}},
        {"peft": {"method": "loha", "r": 4}},
        {"peft": {"method": "lora", "r": 4}, "pooling": "mean"},  # a pooled head saved with the adapter
        {
            "pooling": "attention",
            "multi_sample_dropout": 4,
            "ema": {"decay": 0.9},
        },  # full model + comp_head.safetensors
    ],
    ids=["bottleneck", "loha", "lora-pooled", "full-pooled-ema"],
)
def test_comp_predict_reloads_what_a_run_saved(extra, bert_dir, tmp_path):
    from comp.predict import predict_run
    from comp.runs import load_run
    from comp.train import train
    from tests.helpers import make_workspace

    ws = make_workspace(tmp_path, "multiclass", train_rows=60, test_rows=20)
    (ws.configs_dir / "tiny.yaml").write_text(
        json.dumps(
            {
                "model": "transformer",
                "backbone": str(bert_dir),
                "epochs": 1,
                "batch_size": 16,
                "lr": 3e-3,
                "save_models": True,
                **extra,
            }
        )
    )
    train(ws, ws.configs_dir / "tiny.yaml", n_folds=2)
    run = load_run(ws, "tiny")
    saved = ws.run("tiny").fold_adapter_dir(0) if "peft" in extra else ws.run("tiny").fold_model_dir(0)
    assert (saved / ("adapter_config.json" if "peft" in extra else "comp_head.safetensors")).is_file()
    frame = predict_run(ws.root, "tiny", ws.test_csv)
    np.testing.assert_allclose(frame[run.classes].to_numpy(), run.test, atol=1e-6)


# ---- validation against peft's own config classes ------------------------------------------------
def test_peft_keys_are_checked_against_the_methods_config_class(bert_dir):
    with pytest.raises(
        ConfigError, match=r"peft: unknown key\(s\) rank for peft method lora; valid keys are: .*\balpha\b.*\br\b"
    ):
        T.preflight(_config(bert_dir, {"method": "lora", "rank": 8}), TASK)
    with pytest.raises(
        ConfigError, match=r"peft: method 'lorax' is not a peft method this peft has; methods: .*bottleneck.*lora"
    ):
        T.preflight(_config(bert_dir, {"method": "lorax"}), TASK)
    with pytest.raises(ConfigError, match=r"peft: r must be positive for peft method lora, got 0"):
        T.preflight(_config(bert_dir, {"method": "lora", "r": 0}), TASK)
    with pytest.raises(ConfigError, match=r"peft: peft lora rejects these settings: .*"):
        T.preflight(_config(bert_dir, {"method": "lora", "layers_pattern": "layer"}), TASK)
    with pytest.raises(
        ConfigError, match=r"peft: peft bottleneck rejects these settings: non_linearity must be one of"
    ):
        T.preflight(_config(bert_dir, {"method": "bottleneck", "non_linearity": "cube"}), TASK)
    assert "reduction_factor" in peft_methods.valid_keys("bottleneck")
    assert {"lora", "loha", "ia3", "oft", "prompt_tuning", "bottleneck"} <= set(peft_methods.available_methods())


def test_methods_that_cannot_work_here_fail_before_training(bert_dir, tmp_path):
    with pytest.raises(ConfigError, match="peft prefix_tuning feeds past_key_values, which bert models"):
        T.preflight(_config(bert_dir, {"method": "prefix_tuning", "num_virtual_tokens": 4}), TASK)
    with pytest.raises(ConfigError, match="peft prompt_tuning prepends virtual tokens .* set pooling: auto"):
        T.preflight(_config(bert_dir, {"method": "prompt_tuning", "num_virtual_tokens": 4}, pooling="mean"), TASK)
    with pytest.raises(
        ConfigError, match="peft loha cannot be applied to this backbone: .*linear layers are named: .*query"
    ):
        T.Model(
            _config(bert_dir, {"method": "loha", "target_modules": ["q_proj"]}), TASK, fold_context(tmp_path)
        ).build(32)
