"""`model: generative` — fine-tune an instruction-tuned decoder LLM to *answer* with the labels.

Each training row becomes a chat: the user turn is the config's instruction around the text, the
assistant turn is the row's label names (multilabel: in a seeded shuffled order, or ``none``;
multiclass / binary: the class name), and the loss is on the assistant's tokens and its end-of-turn
only (:mod:`comp.llm.sft`: the labels mask comes from positions, so padding with EOS, as Llama 3
and Mistral need, cannot hide the answer's own EOS). The base is frozen, optionally 4- or 8-bit
(QLoRA), and a peft adapter trains (:class:`comp.models.hf.strategies.Adapter`); a fold saves the
adapter only, and ``comp predict`` reloads it on the backbone.

Why comp's Trainer and not TRL's ``SFTTrainer``: the examples must be built by the scorer's own
encoder (the head's ids shared by every row, so scoring reuses its KV cache, and training sees the
same ids as scoring). On those examples SFTTrainer's completion-only masks equal comp's (tested in
test_llm_sft), so it would add nothing :class:`CompTrainer` lacks, while comp's brings checkpoints
and resume as every transformer fold, per-example weights with a per-example mean (TRL averages over
all answer tokens of a batch, so long list answers would weigh more) and the trimmed logits below.

Rare labels: each example's loss is weighted by ``(count of the commonest label / count of the
row's rarest label) ** rare_label_power`` (capped at ``max_example_weight``, mean 1), and each
example's answer tokens are averaged first, so a long list answer does not outweigh a short one.

The LM head runs only on the batch's answer positions (``logits_to_keep``): a 128k-word vocabulary
times every prompt token would otherwise be the largest tensor of the step, for tokens whose loss
is masked anyway.

Probabilities come from scoring every label's answer under the fine-tuned model with the same
scorer as ``model: prompt`` (one answer among the classes; multilabel: the first label named, with
``none`` taking the empty rows' mass), so generative runs threshold and blend like every family.
The fold's validation rows are scored after training; there is no early stopping.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from comp.atomic import write_text
from comp.errors import ConfigError, RunError
from comp.models.base import FoldContext, TaskInfo
from comp.models.hf.hub import backbone_inputs as inputs  # noqa: F401 - the family hook: run.yaml records it
from comp.models.labelling import LabelPromptConfig

SAVED = "comp_generative.json"
_POSITIVE = ("epochs", "batch_size", "eval_batch_size", "grad_accumulation", "lr", "max_example_weight")


@dataclass
class Config(LabelPromptConfig):
    model: str = "generative"
    peft: dict[str, Any] = field(default_factory=lambda: {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.05})
    max_length: int | None = 256  # tokens per training example and scored sequence (texts are cut, never answers)
    epochs: float = 2.0
    batch_size: int = 8  # per device
    eval_batch_size: int = 16
    grad_accumulation: int = 2
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    scheduler: Literal["linear", "cosine", "constant"] = "cosine"
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool | None = None  # null: on (activations outweigh the adapter's weights)
    group_by_length: bool = True
    checkpoint_every: int | None = None  # optimizer steps between resumable checkpoints; null: none
    num_workers: int = 0
    rare_label_power: float = 0.5  # example weight exponent; 0: every example weighs 1
    max_example_weight: float = 10.0
    none_word: str = "none"  # the answer of a multilabel row without labels
    separator: str = ", "  # between the label names of a multilabel answer
    shuffle_labels: bool = True  # multilabel answers list their labels in a seeded random order
    distributed: Literal["auto", "ddp", "fsdp", "deepspeed"] = "auto"
    zero_stage: int = 2
    report_to: list[str] = field(default_factory=list)
    eval_every: int | None = None  # kept for the Trainer's arguments: the family does not evaluate while training

    def check(self, where: str) -> None:
        self.check_prompt(where)
        for name in _POSITIVE:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{where}: {name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "max_grad_norm", "num_workers", "rare_label_power"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{where}: {name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{where}: warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.max_example_weight < 1:
            raise ConfigError(f"{where}: max_example_weight must be at least 1, got {self.max_example_weight}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"{where}: checkpoint_every must be a positive number of steps or null")
        if not isinstance(self.peft.get("method", "lora"), str):
            raise ConfigError(f"{where}: peft method must be a name such as lora, loha or ia3")
        if not self.none_word.strip() or not self.separator.strip():
            raise ConfigError(f"{where}: none_word and separator must hold a visible character")
        if self.distributed in ("fsdp", "deepspeed") and self.quantization == "8bit":
            raise ConfigError(f"{where}: sharded training takes 4-bit bases only; set quantization: 4bit or none")
        if self.gradient_checkpointing is None:
            self.gradient_checkpointing = True


def preflight(config: Config, task: TaskInfo) -> None:
    """Before any fold: the backbone is a causal LM that resolves offline, its tokenizer builds the
    prompt and the answers fit ``max_length``, device / precision / bitsandbytes kernels, and peft
    knows the method and its keys."""
    from comp.models import labelling
    from comp.models.hf import device as devices
    from comp.models.hf import hub, peft_methods
    from comp.models.hf.checks import check_distributed
    from comp.models.prompt import _check_causal_lm, _check_prompt_fits, is_gguf

    c = config
    if is_gguf(c.backbone):
        raise ConfigError("backbone: a .gguf file cannot be fine-tuned; use the model's hub id or folder")
    labelling.check_label_keys(c, task)
    resolved = hub.resolve_backbone(c.backbone)
    _check_causal_lm(c.backbone, hub.backbone_config(c.backbone, resolved))
    tokenizer = hub.load_tokenizer(c.backbone, resolved)
    _check_prompt_fits(c, task, tokenizer, c.max_length or 2048)
    _check_longest_answer(c, task, tokenizer)
    device = devices.select_device(c.device)
    devices.select_precision(c.precision, device)
    devices.check_quantization(c.quantization, device)
    check_distributed(c, device)
    peft_methods.check_settings(c.peft, "peft")


def _check_longest_answer(c: Config, task: TaskInfo, tokenizer) -> None:
    """A training answer naming every label must fit ``max_length`` with some text."""
    from comp.llm.encoding import encode
    from comp.llm.prompts import Candidate
    from comp.models import labelling

    prompt = labelling.build_prompt(c, tokenizer, task, yes_no=False)
    names = labelling.answer_names(task)
    longest = c.separator.join(names) if task.task == "multilabel" else max(names, key=len)
    try:
        encode(tokenizer, prompt, ["a text"], [Candidate("", prompt.lead + longest + prompt.end)], c.max_length or 2048)
    except ConfigError as exc:
        raise ConfigError(
            f"max_length: {c.max_length} leaves no room for a text with the longest answer ({longest!r}): {exc}"
        ) from None


class AnswerCollator:
    """:class:`comp.llm.sft.SFTCollator`'s batch, trimmed to the columns the loss reads: the model
    is asked for logits only from the token before the batch's first answer token to the last one
    (``logits_to_keep``), and ``labels`` are cut to the same columns; ``weight`` becomes the
    Trainer's ``sample_weight``."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        from comp.llm.sft import SFTCollator

        self.inner = SFTCollator(pad_token_id, pad_to_multiple_of)

    def __call__(self, features: list[dict]) -> dict:
        import torch

        from comp.llm.sft import IGNORE

        batch = self.inner(features)
        labels = batch["labels"]
        scored = (labels != IGNORE).any(dim=0).nonzero().flatten()
        start = max(int(scored.min()) - 1, 0) if len(scored) else 0
        end = int(scored.max()) + 1 if len(scored) else 1
        batch["logits_to_keep"] = torch.arange(start, end)
        batch["labels"] = labels[:, start:end]
        if "weight" in batch:
            batch["sample_weight"] = batch.pop("weight")
        return batch


def lm_loss(logits, labels, sample_weight=None):
    """The answer-only causal-LM loss on trimmed columns (see :class:`AnswerCollator`)."""
    from comp.llm.sft import weighted_lm_loss

    return weighted_lm_loss(logits, labels, sample_weight)


class Model:
    """Fine-tunes ``config.backbone`` to answer with the labels on one fold. Fitted attributes:
    ``losses_`` (the training loss logged by the Trainer, in order), ``strategy_``, ``max_length_``."""

    def __init__(self, config: Config, task: TaskInfo, context: FoldContext):
        self.config = config
        self.task = task
        self.context = context
        self.model_ = None

    def _setup(self) -> None:
        from comp.models.hf import device as devices
        from comp.models.hf import hub, strategies
        from comp.models.hf.checks import check_distributed

        c = self.config
        self.resolved_ = hub.resolve_backbone(c.backbone)
        self.device_ = devices.select_device(c.device)
        self.precision_ = devices.select_precision(c.precision, self.device_)
        devices.check_quantization(c.quantization, self.device_)
        check_distributed(c, self.device_)
        self.strategy_ = strategies.Adapter(c.peft, c.quantization, sharded=c.distributed == "fsdp")
        self.tokenizer_ = hub.load_tokenizer(c.backbone, self.resolved_)
        self.max_length_ = c.max_length or 2048

    def _prompt(self):
        from comp.models import labelling

        return labelling.build_prompt(self.config, self.tokenizer_, self.task, yes_no=False)

    def _base(self):
        from comp.models.labelling import load_causal_lm

        weights = self.strategy_.weight_kwargs(self.precision_, self.device_)
        return load_causal_lm(self.config.backbone, self.resolved_, weights, self.device_)

    # -- training
    def fit(self, texts: Sequence[str], Y: np.ndarray, valid=None) -> Model:
        """texts: n_samples strings; Y: (n_samples, n_outputs) indicators. ``valid`` is not used while
        training (the family does not select a best step); the loop scores it afterwards."""
        from transformers import set_seed
        from transformers.trainer_utils import get_last_checkpoint

        from comp.llm import sft
        from comp.models import labelling
        from comp.models.hf import arguments
        from comp.models.hf.trainer import CompTrainer, param_groups

        c, ctx = self.config, self.context
        self._setup()
        Y = np.asarray(Y, dtype=np.float32)
        names = labelling.answer_names(self.task)
        targets = sft.answers(
            Y,
            names,
            task=self.task.task,
            none=c.none_word,
            separator=c.separator,
            shuffle=c.shuffle_labels,
            seed=ctx.seed + c.seed,
        )
        weights = (
            sft.example_weights(Y, power=c.rare_label_power, max_weight=c.max_example_weight)
            if c.rare_label_power > 0
            else None
        )
        examples = sft.sft_examples(
            self.tokenizer_,
            self._prompt(),
            [str(t) for t in texts],
            targets,
            max_length=self.max_length_,
            weights=weights,
        )
        if weights is not None:
            ctx.log(
                f"fold {ctx.fold}: example weights {weights.min():.2f}..{weights.max():.2f} "
                f"(rare_label_power {c.rare_label_power:g}, cap {c.max_example_weight:g})"
            )

        set_seed(ctx.seed + c.seed)  # the adapter's initial weights
        model = self.strategy_.prepare(self._base(), base_path=self.resolved_, task_type="CAUSAL_LM")
        model.config.use_cache = False  # no KV cache while training (and none with checkpointing)
        checkpoint_dir = Path(ctx.fold_dir) / "checkpoint"
        resume = get_last_checkpoint(str(checkpoint_dir)) if c.checkpoint_every and checkpoint_dir.is_dir() else None
        if not resume and ctx.is_main_process:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
        args = arguments.training_arguments(
            c,
            self.strategy_,
            output_dir=checkpoint_dir,
            log_dir=Path(ctx.fold_dir) / "tensorboard",
            has_valid=False,
            n_rows=len(examples),
            precision=self.precision_,
            device=self.device_,
            seed=ctx.seed + c.seed,
            greater_is_better=True,
        )
        from comp.llm.sft import pad_id

        trainer = CompTrainer(
            model=model,
            args=args,
            train_dataset=examples,
            data_collator=AnswerCollator(pad_id(self.tokenizer_), 8 if self.device_.type == "cuda" else None),
            loss=lm_loss,
            groups=lambda m, no_decay: param_groups(m, c.lr, c.weight_decay, 1.0, no_decay),
        )
        if resume:
            ctx.log(f"fold {ctx.fold}: resuming from {Path(resume).name} (step {int(resume.rsplit('-', 1)[1])})")
        trainer.train(resume_from_checkpoint=resume)
        self.losses_ = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
        self.model_ = trainer.accelerator.unwrap_model(trainer.model)
        self.model_.config.use_cache = True
        self.model_.eval()
        del trainer
        if ctx.is_main_process:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # the fold's arrays are what resume needs now
        return self

    # -- inference
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n_samples, n_outputs) probabilities from scoring each label's answer under the fine-tuned model."""
        from comp.llm.backends import TransformersBackend
        from comp.models import labelling

        if self.model_ is None:
            raise RunError("predict_proba called before fit or load")
        c = self.config
        backend = TransformersBackend(
            self.model_,
            self.tokenizer_,
            max_length=self.max_length_,
            batch_size=c.score_batch_size,
            method=c.method,
            reuse_prefix=c.reuse_prefix,
        )
        prompt = self._prompt()
        scheme = labelling.build_scheme(c, self.task, yes_no=False, none=c.none_word, separator=c.separator)
        logprobs = labelling.scores_of(
            backend,
            prompt,
            [str(t) for t in texts],
            scheme.candidates(prompt),
            cache_dir=None,
            identity="",
            log=self.context.log,
            what=f"fold {self.context.fold}",
        )
        return labelling.to_outputs(scheme.proba(logprobs), self.task)

    # -- persistence: the adapter only; the base comes from config.backbone
    saves_adapter = True

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.strategy_.save(self.model_, directory, self.config.backbone)
        meta = {
            "backbone": self.config.backbone,
            "task": self.task.task,
            "classes": list(self.task.classes),
            "max_length": self.max_length_,
            "strategy": self.strategy_.name,
        }
        write_text(directory / SAVED, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, config: Config, task: TaskInfo, context: FoldContext) -> Model:
        directory = Path(directory)
        path = directory / SAVED
        if not path.is_file():
            raise RunError(f"{directory} holds no saved generative adapter ({SAVED}); retrain with save_models: true")
        meta = json.loads(path.read_text(encoding="utf-8"))
        if list(meta["classes"]) != list(task.classes):
            raise RunError(f"{directory} was trained for classes {meta['classes']}, not {list(task.classes)}")
        model = cls(config, task, context)
        model._setup()
        model.max_length_ = int(meta["max_length"])
        model.model_ = model.strategy_.load(model._base(), directory).eval()
        return model
