"""Backbones from the hub or from disk, and the checks that run before any fold starts."""

from __future__ import annotations

import socket
import sys
import types

import numpy as np
import pytest

from comp.config import build
from comp.errors import ConfigError
from comp.models import transformer as T
from comp.models.base import TaskInfo
from comp.models.hf import hub
from tests.tiny_models import CLASSES, fold_context, make_backbone, synthetic

TASK = TaskInfo("multilabel", CLASSES)
PROXY_VARS = (
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("tiny-bert"), "bert")


def _config(backbone, **kw):
    return build(
        T.Config,
        {
            "model": "transformer",
            "backbone": str(backbone),
            "lr": 3e-3,
            "batch_size": 8,
            "epochs": 1,
            "patience": 0,
            "max_length": 32,
            **kw,
        },
        "m.yaml",
    )


# ---- the one probe of the hub ---------------------------------------------------------------------
@pytest.fixture
def online(monkeypatch):
    import huggingface_hub.constants

    for name in (*PROXY_VARS, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return monkeypatch


def _listening():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    return server, server.getsockname()[1]


def test_hub_probe_connects_through_the_https_proxy(online):
    closed, closed_port = _listening()
    closed.close()  # nobody listens on the "hub" address
    hub_url = f"https://127.0.0.1:{closed_port}"
    proxy, proxy_port = _listening()
    with proxy:
        assert not hub.hub_reachable(hub_url, timeout=2)  # direct: refused
        online.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy_port}")
        assert hub.hub_reachable(hub_url, timeout=2)  # the proxy answers for the hub
        online.setenv("NO_PROXY", "127.0.0.1")
        assert not hub.hub_reachable(hub_url, timeout=2)  # NO_PROXY: direct again
        online.delenv("NO_PROXY")
        online.setenv("HF_HUB_OFFLINE", "1")
        online.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
        assert not hub.hub_reachable(hub_url, timeout=2)  # offline mode: never probed
    online.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert not hub.hub_reachable(hub_url, timeout=2)  # a proxy that is down is no way to the hub


def test_hf_dataset_uses_the_same_probe(online, tmp_path):
    import comp.hf_dataset as hf_dataset

    calls = []
    online.setattr(hub, "hub_reachable", lambda *a, **k: calls.append(a) or False)
    online.setattr("datasets.config.HF_HUB_OFFLINE", False)
    with pytest.raises(Exception):  # noqa: B017 - nothing is cached: any failure will do, the probe is the point
        hf_dataset.export_hf_dataset("nobody/no-such-dataset", tmp_path / "data")
    assert calls and "hub_reachable" not in vars(hf_dataset)


# ---- a checkpoint fine-tuned elsewhere, with a head of another size --------------------------------
def test_a_head_of_another_size_is_replaced_and_said_so(bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    elsewhere = tmp_path / "fine-tuned-elsewhere"
    AutoModelForSequenceClassification.from_pretrained(str(bert_dir), num_labels=7).save_pretrained(elsewhere)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (elsewhere / name).write_bytes((bert_dir / name).read_bytes())
    texts, Y = synthetic(40, "multilabel", seed=1)
    logs = []
    model = T.Model(_config(elsewhere), TASK, fold_context(tmp_path, logs)).fit(texts, Y)
    assert model.predict_proba(texts).shape == (40, 4)
    line = next(m for m in logs if "head of another size" in m)
    assert f"backbone '{elsewhere}' was saved with a head of another size" in line
    assert "classifier.weight: (7, 64) saved, (4, 64) here" in line and "a fresh head is trained" in line
    logs.clear()
    T.Model(_config(bert_dir), TASK, fold_context(tmp_path / "plain", logs)).fit(texts, Y)
    assert not any("head of another size" in m for m in logs)


def test_comp_train_logs_the_fresh_head_in_train_log(bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from comp.train import train
    from tests.helpers import make_workspace

    elsewhere = tmp_path / "elsewhere"
    AutoModelForSequenceClassification.from_pretrained(str(bert_dir), num_labels=5).save_pretrained(elsewhere)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (elsewhere / name).write_bytes((bert_dir / name).read_bytes())
    ws = make_workspace(tmp_path, "multiclass", train_rows=40, test_rows=10)
    (ws.configs_dir / "ft.yaml").write_text(f"model: transformer\nbackbone: {elsewhere}\nepochs: 1\nmax_length: 32\n")
    train(ws, ws.configs_dir / "ft.yaml", n_folds=2)
    log = ws.run("ft").log.read_text()
    assert log.count("was saved with a head of another size") == 2  # once per fold, in train.log
    assert "classifier.weight: (5, 64) saved, (3, 64) here" in log


# ---- preflight: what fails before any fold starts ------------------------------------------------
def test_preflight_names_a_backbone_that_cannot_be_resolved(tmp_path, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(ConfigError, match=r"backbone '.*missing' cannot be loaded: it is not a local folder"):
        T.preflight(_config(tmp_path / "missing"), TASK)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"backbone folder .*empty has no config.json"):
        T.preflight(_config(tmp_path / "empty"), TASK)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"backbone '.*broken': cannot read its config.json"):
        T.preflight(_config(tmp_path / "broken"), TASK)


def test_preflight_checks_this_machines_device_precision_and_packages(bert_dir, monkeypatch):
    import torch

    T.preflight(_config(bert_dir), TASK)  # a good config passes
    with pytest.raises(ConfigError, match="device: cuda but this machine has no CUDA GPU"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        T.preflight(_config(bert_dir, device="cuda"), TASK)
    with pytest.raises(ConfigError, match="precision: fp16 needs a CUDA GPU"):
        T.preflight(_config(bert_dir, precision="fp16"), TASK)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla T4")
    with pytest.raises(ConfigError, match="precision: bf16 but Tesla T4 does not support bf16; use precision: fp16"):
        T.preflight(_config(bert_dir, device="cuda", precision="bf16"), TASK)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.SimpleNamespace(supported_torch_devices={"cuda"}))
    with pytest.raises(ConfigError, match="quantization: 4bit needs bitsandbytes' quantised layers on cpu"):
        T.preflight(_config(bert_dir, peft={"method": "lora"}, quantization="4bit"), TASK)
    with pytest.raises(ConfigError, match="distributed: fsdp needs CUDA GPUs .* use distributed: ddp on CPU"):
        T.preflight(_config(bert_dir, distributed="fsdp"), TASK)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="distributed: deepspeed needs the deepspeed package: pip install deepspeed"):
        T.preflight(_config(bert_dir, distributed="deepspeed", device="cuda", precision="fp32"), TASK)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"max_length 4096 exceeds what backbone .* accepts \(128 tokens\)"):
        T.preflight(_config(bert_dir, max_length=4096), TASK)
    with pytest.raises(ConfigError, match="tail_tokens 40 leaves no room for the head of a text within max_length 32"):
        T.preflight(_config(bert_dir, tail_tokens=40), TASK)


def test_trackers_are_checked_when_training_starts_not_when_a_run_is_read(bert_dir, tmp_path):
    import yaml

    from comp.predict import predict_run
    from comp.runs import load_run
    from comp.train import train
    from tests.helpers import make_workspace

    pytest.importorskip("yaml")
    if __import__("importlib").util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    config = _config(bert_dir, report_to=["wandb"])  # building the config needs no tracker
    with pytest.raises(ConfigError, match=r"report_to 'wandb' needs the wandb package: pip install wandb"):
        T.preflight(config, TASK)
    ws = make_workspace(tmp_path, "multiclass", train_rows=40, test_rows=10)
    (ws.configs_dir / "tiny.yaml").write_text(
        f"model: transformer\nbackbone: {bert_dir}\nepochs: 1\nsave_models: true\n"
    )
    train(ws, ws.configs_dir / "tiny.yaml", n_folds=2)
    record_path = ws.run("tiny").run_yaml
    record = yaml.safe_load(record_path.read_text())
    record["config"]["report_to"] = ["wandb"]  # as if trained where wandb was installed
    record_path.write_text(yaml.safe_dump(record))
    frame = predict_run(ws.root, "tiny", ws.test_csv)
    np.testing.assert_allclose(frame[load_run(ws, "tiny").classes].to_numpy(), load_run(ws, "tiny").test, atol=1e-6)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("lr", -1e-5, "lr must be positive, got -1e-05"),
        ("epochs", 0, "epochs must be positive"),
        ("batch_size", -8, "batch_size must be positive"),
        ("eval_batch_size", 0, "eval_batch_size must be positive"),
        ("grad_accumulation", 0, "grad_accumulation must be positive"),
        ("max_length_cap", 0, "max_length_cap must be positive"),
        ("weight_decay", -0.1, "weight_decay must not be negative"),
        ("max_grad_norm", -1.0, "max_grad_norm must not be negative"),
        ("patience", -1, "patience must not be negative"),
        ("tail_tokens", -4, "tail_tokens must not be negative"),
        ("reinit_layers", -1, "reinit_layers must not be negative"),
        ("warmup_ratio", 1.5, r"warmup_ratio must be in \[0, 1\)"),
        ("layer_lr_decay", 0.0, r"layer_lr_decay must be in \(0, 1\]"),
        ("eval_every", 0, "eval_every must be a positive number of steps or null"),
        ("zero_stage", 4, "zero_stage must be 1, 2 or 3"),
        ("multi_sample_dropout", 0, "multi_sample_dropout must be at least 1"),
        ("head_dropout", 1.0, r"head_dropout must be in \[0, 1\)"),
        ("pooling", "max", "pooling: 'max' is not one of auto, cls, mean, last, concat4, attention"),
        ("distributed", "horovod", "distributed: 'horovod' is not one of auto, ddp, fsdp, deepspeed"),
    ],
)
def test_every_value_a_library_would_reject_is_a_config_error(key, value, message):
    with pytest.raises(ConfigError, match=f"m.yaml: {message}"):
        build(
            T.Config,
            {
                "model": "transformer",
                "backbone": "b",
                key: value,
                **({"pooling": "mean"} if key == "head_dropout" else {}),
            },
            "m.yaml",
        )


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"awp": {"eps": -1}}, "awp lr and eps must be positive"),
        ({"fgm": {"epsilon": 0}}, "fgm epsilon must be positive"),
        ({"ema": {"decay": 1.0}}, r"ema decay must be in \(0, 1\)"),
        ({"freeze": {"layers": -2}}, "freeze layers must be >= 0"),
        ({"freeze": {"layer": 2}}, r"unknown key\(s\) layer; valid keys are: embeddings, layers"),
        ({"peft": {"method": "lora"}, "reinit_layers": 1}, "reinit_layers changes the backbone's own weights"),
        ({"distributed": "fsdp", "ema": {}}, "ema, swa, awp and fgm need whole weights on each process"),
        ({"distributed": "fsdp", "peft": {"method": "lora"}, "quantization": "8bit"}, "FSDP shards 4-bit bases only"),
    ],
)
def test_trick_settings_are_checked_when_the_config_is_built(raw, message):
    with pytest.raises(ConfigError, match=message):
        build(T.Config, {"model": "transformer", "backbone": "b", **raw}, "m.yaml")
