"""A transformer-family config -> the Trainer's ``TrainingArguments``.

Model selection is the Trainer's: every evaluation scores the fold's validation rows with tuned
thresholds (``eval_score``), ``load_best_model_at_end`` restores the best. Without resumable
checkpoints (``checkpoint_every: null``) only a new best is written, weights only
(``save_strategy: best``, ``save_only_model``: one model's worth of disk, no optimizer state);
with them every evaluation and every ``checkpoint_every`` steps write a full, resumable checkpoint.

``distributed`` maps onto the Trainer's settings for a ``torchrun`` / ``accelerate launch`` of
several processes: ``ddp`` (the default under a launcher), ``fsdp`` (full sharding, auto-wrapped by
transformer layer; with a 4-bit base, FSDP-QLoRA), ``deepspeed`` (ZeRO stage ``zero_stage``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

DISTRIBUTED = ("auto", "ddp", "fsdp", "deepspeed")


def distributed_kwargs(config, strategy) -> dict:
    mode = config.distributed
    if mode == "fsdp":
        return {
            "fsdp": "full_shard auto_wrap",
            "fsdp_config": {
                "activation_checkpointing": bool(config.gradient_checkpointing),
                "cpu_ram_efficient_loading": True,
                "sync_module_states": True,
                # peft's frozen base and trainable adapter share FSDP units: flat parameters must not mix
                # requires_grad, which use_orig_params=False with peft's own wrap policy guarantees
                "use_orig_params": not strategy.frozen_base,
            },
        }
    if mode == "deepspeed":
        return {
            "deepspeed": {
                "zero_optimization": {
                    "stage": config.zero_stage,
                    "overlap_comm": True,
                    "contiguous_gradients": True,
                    "stage3_gather_16bit_weights_on_model_save": True,
                },
                "bf16": {"enabled": "auto"},
                "fp16": {"enabled": "auto"},
                "train_micro_batch_size_per_gpu": "auto",
                "train_batch_size": "auto",
                "gradient_accumulation_steps": "auto",
                "gradient_clipping": "auto",
            }
        }
    return {"ddp_find_unused_parameters": False}  # every trainable weight is used: skip DDP's graph walk


def _common(config, precision: str, device, output_dir: Path) -> dict:
    return dict(
        output_dir=str(output_dir),
        per_device_eval_batch_size=config.eval_batch_size,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device.type == "cpu",
        dataloader_num_workers=config.num_workers,
        remove_unused_columns=False,
        label_names=["labels"],
        disable_tqdm=True,
        log_level="error",
    )


def training_arguments(
    config,
    strategy,
    *,
    output_dir: Path,
    log_dir: Path,
    has_valid: bool,
    n_rows: int,
    precision: str,
    device,
    seed: int,
    greater_is_better: bool,
):
    from transformers import TrainingArguments

    c = config
    steps_per_epoch = max(1, math.ceil(n_rows / (c.batch_size * c.grad_accumulation)))
    resumable = c.checkpoint_every is not None
    evaluation = "no" if not has_valid else ("steps" if c.eval_every else "epoch")
    if evaluation == "no":
        save = "steps" if resumable else "no"
    else:
        save = evaluation if resumable else "best"
    if "tensorboard" in c.report_to:
        # the Trainer's default log folder sits in the checkpoint folder, which is removed after the fold
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(log_dir)
    return TrainingArguments(
        **_common(c, precision, device, output_dir),
        num_train_epochs=c.epochs,
        per_device_train_batch_size=c.batch_size,
        gradient_accumulation_steps=c.grad_accumulation,
        learning_rate=c.lr,
        weight_decay=c.weight_decay,
        warmup_steps=c.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=c.scheduler if c.scheduler != "constant" else "constant_with_warmup",
        max_grad_norm=c.max_grad_norm,
        activation_checkpointing=bool(c.gradient_checkpointing) and c.distributed != "fsdp",
        eval_strategy=evaluation,
        eval_steps=c.eval_every,
        save_strategy=save,
        save_steps=c.eval_every if evaluation == "steps" else (c.checkpoint_every or 500),
        save_total_limit=1,  # with load_best_model_at_end the best is kept as well
        save_only_model=not resumable,
        load_best_model_at_end=has_valid,
        metric_for_best_model="score" if has_valid else None,
        greater_is_better=greater_is_better if has_valid else None,
        logging_strategy="steps",
        logging_steps=max(1, min(c.eval_every or steps_per_epoch, 50)),
        train_sampling_strategy="group_by_length" if c.group_by_length else "random",
        seed=seed,
        report_to=list(c.report_to) or "none",
        **distributed_kwargs(c, strategy),
    )


def inference_arguments(config, *, output_dir: Path, precision: str, device):
    from transformers import TrainingArguments

    return TrainingArguments(**_common(config, precision, device, output_dir), report_to="none")
