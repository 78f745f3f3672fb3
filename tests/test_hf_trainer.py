"""The pieces around the Trainer: the loss, the arguments a config maps to, the callbacks."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from comp.config import build
from comp.models import transformer as T
from comp.models.hf import arguments, callbacks, losses, strategies
from comp.models.hf.trainer import CompTrainer


def _config(**kw):
    return build(T.Config, {"model": "transformer", "backbone": "b", **kw}, "m.yaml")


# ---- the loss: hard or soft targets, per-row weights ---------------------------------------------
def test_soft_targets_and_row_weights_generalise_the_hard_loss():
    import torch.nn.functional as F

    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    hard = torch.eye(3)[[0, 1, 2, 1, 0, 2]]
    w = torch.tensor([1.0, 3.0, 0.5])
    ones = torch.ones(6)
    for task in ("multiclass", "multilabel"):
        plain = losses.loss_value(logits, hard, task, w)
        assert torch.allclose(losses.loss_value(logits, hard, task, w, sample_weight=ones), plain)
        assert torch.allclose(losses.loss_value(logits, hard, task, w, sample_weight=3 * ones), plain)
    # soft multiclass targets: the cross-entropy against the target distribution
    soft = torch.softmax(torch.randn(6, 3), -1)
    expected = -(soft * F.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(losses.loss_value(logits, soft, "multiclass"), expected)
    assert torch.allclose(
        losses.loss_value(logits, soft, "multilabel"), F.binary_cross_entropy_with_logits(logits, soft)
    )
    # a row of weight 0 does not count; weight 2 counts twice
    zero_last = torch.tensor([1.0, 1, 1, 1, 1, 0])
    assert torch.allclose(
        losses.loss_value(logits, hard, "multiclass", sample_weight=zero_last),
        losses.loss_value(logits[:5], hard[:5], "multiclass"),
    )
    double_first = torch.tensor([2.0, 1, 1, 1, 1, 1])
    repeated = losses.loss_value(torch.cat([logits[:1], logits]), torch.cat([hard[:1], hard]), "multiclass")
    assert torch.allclose(losses.loss_value(logits, hard, "multiclass", sample_weight=double_first), repeated)


def test_the_trainer_passes_row_weights_from_the_batch_to_the_loss():
    seen = {}

    def loss(logits, labels, sample_weight=None):
        seen["sample_weight"] = sample_weight
        return logits.sum()

    trainer = types.SimpleNamespace(comp_loss=loss)
    outputs = types.SimpleNamespace(logits=torch.ones(2, 3))
    model_fn = lambda **inputs: (seen.setdefault("inputs", sorted(inputs)), outputs)[1]  # noqa: E731
    batch = {"input_ids": torch.ones(2, 4), "labels": torch.zeros(2, 3), "sample_weight": torch.tensor([1.0, 0.5])}
    CompTrainer.compute_loss(trainer, model_fn, batch)
    assert seen["inputs"] == ["input_ids"] and torch.equal(seen["sample_weight"], torch.tensor([1.0, 0.5]))
    assert sorted(batch) == ["input_ids", "labels", "sample_weight"]  # the batch itself is left alone


# ---- TrainingArguments from a config -------------------------------------------------------------
def _args(config, has_valid=True):
    return arguments.training_arguments(
        config,
        strategies.choose(config),
        output_dir=Path("/nonexistent/ckpt"),
        log_dir=Path("/nonexistent/tb"),
        has_valid=has_valid,
        n_rows=100,
        precision="fp32",
        device=torch.device("cpu"),
        seed=3,
        greater_is_better=True,
    )


def test_best_model_and_checkpoints_are_the_trainers():
    args = _args(_config())
    assert args.load_best_model_at_end and args.metric_for_best_model == "score" and args.greater_is_better
    assert args.save_strategy == "best" and args.save_only_model  # only a new best is written, weights only
    resumable = _args(_config(checkpoint_every=5, eval_every=10))
    assert resumable.save_strategy == "steps" and resumable.save_steps == 10 and not resumable.save_only_model
    blind = _args(_config(checkpoint_every=5), has_valid=False)
    assert blind.eval_strategy == "no" and not blind.load_best_model_at_end and blind.save_steps == 5
    assert args.train_sampling_strategy == "group_by_length" and args.seed == 3


def test_distributed_modes_map_onto_the_trainers_settings():
    assert arguments.distributed_kwargs(_config(), strategies.FullFineTune()) == {"ddp_find_unused_parameters": False}
    fsdp = arguments.distributed_kwargs(
        _config(distributed="fsdp", peft={"method": "lora"}, quantization="4bit"),
        strategies.Adapter({"method": "lora"}, "4bit", sharded=True),
    )
    assert fsdp["fsdp"] == "full_shard auto_wrap"
    assert fsdp["fsdp_config"]["cpu_ram_efficient_loading"] and fsdp["fsdp_config"]["use_orig_params"] is False
    deepspeed = arguments.distributed_kwargs(_config(distributed="deepspeed", zero_stage=3), strategies.FullFineTune())
    assert deepspeed["deepspeed"]["zero_optimization"]["stage"] == 3
    assert deepspeed["deepspeed"]["train_micro_batch_size_per_gpu"] == "auto"  # filled in from the Trainer's args


def test_fsdp_qlora_stores_4bit_weights_in_the_compute_dtype():
    from comp.models.hf.device import weight_kwargs

    cpu = torch.device("cpu")
    sharded = weight_kwargs("bf16", cpu, frozen_base=True, quantization="4bit", sharded=True)
    assert sharded["quantization_config"].bnb_4bit_quant_storage == torch.bfloat16 and "device_map" not in sharded
    placed = weight_kwargs("bf16", cpu, frozen_base=True, quantization="4bit")
    assert placed["device_map"] == {"": "cpu"}
    assert weight_kwargs("bf16", cpu, frozen_base=False) == {"dtype": torch.float32}  # fp32 master weights


# ---- callbacks -----------------------------------------------------------------------------------
def test_early_stopping_waits_for_min_epochs():
    stop = callbacks.MinEpochsEarlyStopping(early_stopping_patience=1, min_epochs=2.0)
    args = types.SimpleNamespace(metric_for_best_model="score", greater_is_better=True)
    control = types.SimpleNamespace(should_training_stop=False)
    state = types.SimpleNamespace(epoch=1.0, best_metric=0.5)
    stop.on_evaluate(args, state, control, {"eval_score": 0.4})
    assert not control.should_training_stop  # one bad evaluation, but before epoch 2
    state.epoch = 2.0
    stop.on_evaluate(args, state, control, {"eval_score": 0.4})
    assert control.should_training_stop
    assert stop.state()["args"]["min_epochs"] == 2.0  # saved with the checkpoint, restored on resume


def test_history_comes_from_the_trainers_log():
    log = [
        {"loss": 1.0, "step": 5, "epoch": 0.5},
        {"eval_score": 0.3, "step": 10, "epoch": 1.0},
        {"loss": 0.8, "step": 15, "epoch": 1.5},
        {"eval_score": 0.2, "step": 20, "epoch": 2.0},
        {"eval_score": 0.4, "step": 30, "epoch": 3.0},
    ]
    assert callbacks.history(log, greater_is_better=True) == [
        {"epoch": 1.0, "step": 10, "score": 0.3, "loss": 1.0, "best": True},
        {"epoch": 2.0, "step": 20, "score": 0.2, "loss": 0.8, "best": False},
        {"epoch": 3.0, "step": 30, "score": 0.4, "loss": 0.8, "best": True},
    ]
    assert [h["best"] for h in callbacks.history(log, greater_is_better=False)] == [True, True, False]


def test_checkpoints_between_evaluations():
    every = callbacks.CheckpointEvery(4)
    control = types.SimpleNamespace(should_save=False)
    every.on_step_end(None, types.SimpleNamespace(global_step=3), control)
    assert not control.should_save
    every.on_step_end(None, types.SimpleNamespace(global_step=8), control)
    assert control.should_save


@pytest.mark.parametrize("event", callbacks.TrickEvents.EVENTS)
def test_trick_events_reach_the_tricks_that_listen(event):
    heard = []
    listener = types.SimpleNamespace(**{event: lambda args, state, control, **kw: heard.append(kw.get("model"))})
    deaf = types.SimpleNamespace()
    getattr(callbacks.TrickEvents([listener, deaf]), event)(None, None, None, model="m")
    assert heard == ["m"]


def test_rows_can_carry_soft_targets_and_row_weights_through_the_collator():
    """The seam for pseudo-labels and distillation: soft "labels" and a "sample_weight" per row batch up."""
    import numpy as np
    from transformers import DataCollatorWithPadding

    from tests.tiny_models import bert_tokenizer

    rows = [
        {
            "input_ids": np.array([2, 5, 6, 3]),
            "labels": np.array([0.7, 0.3], dtype=np.float32),
            "sample_weight": np.float32(0.5),
        },
        {
            "input_ids": np.array([2, 7, 3]),
            "labels": np.array([0.0, 1.0], dtype=np.float32),
            "sample_weight": np.float32(1.0),
        },
    ]
    batch = DataCollatorWithPadding(bert_tokenizer())(rows)
    assert batch["labels"].dtype == torch.float32 and tuple(batch["labels"].shape) == (2, 2)
    assert batch["sample_weight"].tolist() == [0.5, 1.0] and tuple(batch["input_ids"].shape) == (2, 4)
