"""Checks of a transformer-family config, and the validation score that selects the best model.

``check_config`` is static (it runs whenever a config is built, also when ``comp predict`` rebuilds
a stored one): ranges, combinations, names. ``preflight`` checks this machine before any fold
starts: the backbone resolves offline (no weights are read), device, precision and quantisation
kernels exist, peft knows the method and its keys, trackers and DeepSpeed are installed.
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

from comp.errors import ConfigError
from comp.models.base import TaskInfo

# report_to name -> the package the Trainer's callback needs
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
_POSITIVE = ("epochs", "batch_size", "eval_batch_size", "grad_accumulation", "lr", "max_pos_weight", "max_length_cap")
_NOT_NEGATIVE = ("patience", "gamma", "weight_decay", "max_grad_norm", "num_workers", "tail_tokens", "reinit_layers")


def check_config(c, where: str) -> None:
    """Static checks of a ``comp.models.transformer.Config``; resolves ``gradient_checkpointing: null``
    (on with peft, where activations outweigh the trainable weights; off for full fine-tuning)."""
    if not str(c.backbone).strip():
        raise ConfigError(f"{where}: backbone is empty; give a hub id, a local folder, or minilm")
    if isinstance(c.max_length, str) and c.max_length != "auto":
        raise ConfigError(f"{where}: max_length must be a number of tokens or auto, got {c.max_length!r}")
    if isinstance(c.max_length, int) and c.max_length < 8:
        raise ConfigError(f"{where}: max_length must be at least 8 tokens, got {c.max_length}")
    if not 0 < c.max_length_percentile <= 100:
        raise ConfigError(f"{where}: max_length_percentile must be in (0, 100], got {c.max_length_percentile}")
    for name in _POSITIVE:
        if not getattr(c, name) > 0:  # also catches NaN
            raise ConfigError(f"{where}: {name} must be positive, got {getattr(c, name)}")
    for name in _NOT_NEGATIVE:
        if not getattr(c, name) >= 0:
            raise ConfigError(f"{where}: {name} must not be negative, got {getattr(c, name)}")
    if not 0 <= c.min_epochs <= c.epochs:
        raise ConfigError(f"{where}: min_epochs must be between 0 and epochs ({c.epochs}), got {c.min_epochs}")
    if not 0 < c.layer_lr_decay <= 1:
        raise ConfigError(f"{where}: layer_lr_decay must be in (0, 1], got {c.layer_lr_decay}")
    if not 0 <= c.warmup_ratio < 1:
        raise ConfigError(f"{where}: warmup_ratio must be in [0, 1), got {c.warmup_ratio}")
    for name in ("eval_every", "checkpoint_every"):
        if getattr(c, name) is not None and getattr(c, name) < 1:
            raise ConfigError(f"{where}: {name} must be a positive number of steps or null")
    _check_head(c, where)
    _check_adapter(c, where)
    _check_tricks(c, where)
    if c.zero_stage not in (1, 2, 3):
        raise ConfigError(f"{where}: zero_stage must be 1, 2 or 3 (DeepSpeed ZeRO), got {c.zero_stage}")
    for tracker in c.report_to:
        if tracker not in TRACKERS:
            raise ConfigError(f"{where}: report_to '{tracker}' is not one of {', '.join(TRACKERS)}")
    if c.gradient_checkpointing is None:
        c.gradient_checkpointing = c.peft is not None


def _check_head(c, where: str) -> None:
    if c.multi_sample_dropout < 1:
        raise ConfigError(f"{where}: multi_sample_dropout must be at least 1, got {c.multi_sample_dropout}")
    if c.head_dropout is not None and not 0 <= c.head_dropout < 1:
        raise ConfigError(f"{where}: head_dropout must be in [0, 1), got {c.head_dropout}")
    if c.pooling == "auto" and (c.multi_sample_dropout > 1 or c.head_dropout is not None):
        key = "multi_sample_dropout" if c.multi_sample_dropout > 1 else "head_dropout"
        raise ConfigError(
            f"{where}: {key} needs comp's pooled head; set pooling: cls, mean, last, concat4 or "
            "attention (pooling: auto keeps the architecture's own head)"
        )
    if c.prompt_template is not None and c.prompt_template.count("{text}") != 1:
        raise ConfigError(
            f"{where}: prompt_template must contain {{text}} exactly once, got {c.prompt_template!r}; "
            'e.g. prompt_template: "Tweet: {text}\\nEmotions:"'
        )


def _check_adapter(c, where: str) -> None:
    if c.peft is not None and not isinstance(c.peft.get("method", "lora"), str):
        raise ConfigError(f"{where}: peft method must be a name such as lora, ia3, loha or bottleneck")
    if c.quantization != "none" and c.peft is None:
        raise ConfigError(
            f"{where}: quantization: {c.quantization} freezes the backbone's weights, so it needs an adapter to "
            "train; add peft: {method: lora} or set quantization: none"
        )
    if c.distributed == "fsdp" and c.quantization == "8bit":
        raise ConfigError(f"{where}: FSDP shards 4-bit bases only (FSDP-QLoRA); set quantization: 4bit or none")


def _check_tricks(c, where: str) -> None:
    if c.peft is not None:
        for key, on in (("fgm", c.fgm), ("freeze", c.freeze), ("reinit_layers", c.reinit_layers)):
            if on:
                raise ConfigError(
                    f"{where}: {key} changes the backbone's own weights, which an adapter keeps frozen; "
                    f"remove {key} or peft"
                )
    if c.fgm and c.freeze and c.freeze.embeddings:
        raise ConfigError(f"{where}: fgm perturbs the word embeddings, which freeze.embeddings keeps fixed; drop one")
    if c.ema and c.swa:
        raise ConfigError(f"{where}: ema and swa are two weight averages; keep one")
    sharded = c.distributed == "fsdp" or (c.distributed == "deepspeed" and c.zero_stage == 3)
    if sharded and (c.ema or c.swa or c.awp or c.fgm):
        raise ConfigError(
            f"{where}: ema, swa, awp and fgm need whole weights on each process; use distributed: "
            "ddp (or deepspeed with zero_stage 1-2)"
        )


def preflight(c, task: TaskInfo) -> None:
    """See the module docstring; raises a one-line ConfigError naming the key and what to do."""
    from comp.models.hf import device as devices
    from comp.models.hf import hub, peft_methods
    from comp.models.hf.tokens import PromptTemplate, TokenIds

    resolved = hub.resolve_backbone(c.backbone)
    model_config = hub.backbone_config(c.backbone, resolved)
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
        MODEL_MAPPING,
    )

    if c.pooling == "auto" and type(model_config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise ConfigError(
            f"backbone '{c.backbone}' ({model_config.model_type}) has no sequence-classification "
            "head in transformers; set pooling: cls, mean or last for comp's own head"
        )
    if c.pooling != "auto" and type(model_config) not in MODEL_MAPPING:
        raise ConfigError(
            f"backbone '{c.backbone}' ({model_config.model_type}) has no AutoModel class in transformers "
            "for a pooled head; set pooling: auto"
        )
    tokens = TokenIds(
        hub.load_tokenizer(c.backbone, resolved),
        resolved,
        None,
        template=PromptTemplate(c.prompt_template),
        tail=c.tail_tokens,
    )
    if isinstance(c.max_length, int):
        if c.max_length > tokens.store_length:
            raise ConfigError(
                f"max_length {c.max_length} exceeds what backbone '{c.backbone}' accepts "
                f"({tokens.store_length} tokens); lower max_length"
            )
        tokens.check_tail(c.max_length)
    device = devices.select_device(c.device)
    devices.select_precision(c.precision, device)
    devices.check_quantization(c.quantization, device)
    check_distributed(c, device)
    if c.peft is not None:
        method = str(c.peft.get("method", "lora")).lower()
        peft_methods.check_settings(c.peft, "peft")
        if c.pooling != "auto" and peft_methods.is_prompt_learning(method):
            raise ConfigError(
                f"peft {method} prepends virtual tokens through the architecture's own head; set pooling: auto"
            )
        if method == "prefix_tuning":
            peft_methods.check_prefix_tuning(model_config, c.backbone)
    for tracker in c.report_to:
        if importlib.util.find_spec(TRACKERS[tracker]) is None:
            raise ConfigError(
                f"report_to '{tracker}' needs the {TRACKERS[tracker]} package: pip install "
                f"{TRACKERS[tracker]}, or remove it from report_to"
            )
    if c.distributed == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "distributed: deepspeed needs the deepspeed package: pip install deepspeed, or use distributed: ddp or fsdp"
        )


def check_distributed(c, device) -> None:
    """FSDP and DeepSpeed run on accelerators only (accelerate has no CPU backend for them)."""
    if c.distributed in ("fsdp", "deepspeed") and getattr(device, "type", str(device)) != "cuda":
        raise ConfigError(
            f"distributed: {c.distributed} needs CUDA GPUs (accelerate runs it on accelerators only); "
            "use distributed: ddp on CPU"
        )


def auto_max_length(lengths: np.ndarray, percentile: float, cap: int) -> int:
    """The ``percentile`` of token lengths rounded up to a multiple of 8, within [8, cap]."""
    value = float(np.percentile(lengths, percentile)) if len(lengths) else 8.0
    return int(min(max(8, math.ceil(value / 8) * 8), cap))


def validation_score(P: np.ndarray, Y: np.ndarray, task: TaskInfo) -> tuple[float, float]:
    """``(score, signed)``: the metric with thresholds tuned on these rows (probability metrics as
    they are), and the same value signed so that larger is always better."""
    from comp.metrics import get_metric, score

    metric = get_metric(task.metric)
    if metric.needs_proba:
        value = float(score(task.metric, Y, P, task.task))
    else:
        from comp.thresholds import ThresholdOptimizer

        value = float(ThresholdOptimizer(task.metric, task.task, task.min_labels).fit(P, Y).score_)
    return value, value if metric.greater_is_better else -value
