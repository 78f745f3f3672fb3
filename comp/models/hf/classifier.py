"""The sequence classifier a fold trains: built, saved and loaded through a strategy.

``pooling: auto``: ``AutoModelForSequenceClassification`` with the architecture's own head (peft
task type ``SEQ_CLS``: the head trains and is saved with an adapter). Any other pooling: a
:class:`comp.models.hf.heads.PooledClassifier` on ``AutoModel`` (its ``head`` is peft's
``modules_to_save``). A fold folder holds ``save_pretrained`` files (full fine-tuning, plus
``comp_head.safetensors`` for a pooled head) or an adapter (``adapter_config.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from comp.models.base import TaskInfo
from comp.models.hf.hub import align_pad_token, load_pretrained


def _label_kwargs(task: TaskInfo) -> dict:
    labels = list(task.classes)
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {name: i for i, name in enumerate(labels)},
        "problem_type": "single_label_classification" if task.task == "multiclass" else "multi_label_classification",
    }


def head_dropout(config, model_config) -> float:
    """``head_dropout``, else the backbone's own classifier / hidden dropout, else 0.1."""
    if config.head_dropout is not None:
        return float(config.head_dropout)
    text = model_config.get_text_config()
    for name in ("classifier_dropout", "hidden_dropout_prob", "hidden_dropout", "dropout"):
        value = getattr(text, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.1


def _pooled(base, config, task: TaskInfo):
    from comp.models.hf.heads import PooledClassifier

    model = PooledClassifier(
        base, config.pooling, task.n_outputs, head_dropout(config, base.config), config.multi_sample_dropout
    )
    model.head.to(next(base.parameters()).device)  # a quantised base is placed while loading
    return model


def build(
    config,
    task: TaskInfo,
    resolved: str,
    tokenizer,
    strategy,
    precision: str,
    device,
    log: Callable[[str], None],
    run: dict | None = None,
):
    """A fresh classifier for a fold: pretrained backbone, new head, the strategy's adapter."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    weights = strategy.weight_kwargs(precision, device)
    if config.pooling == "auto":
        model = load_pretrained(
            AutoModelForSequenceClassification,
            config.backbone,
            resolved,
            fresh_head=log,
            **_label_kwargs(task),
            **weights,
        )
        task_type, keep = "SEQ_CLS", None
    else:
        model = _pooled(load_pretrained(AutoModel, config.backbone, resolved, **weights), config, task)
        task_type, keep = None, ["head"]
    align_pad_token(model, tokenizer)  # batches are padded: the model must know with what
    return strategy.prepare(model, base_path=resolved, task_type=task_type, modules_to_save=keep, run=run)


def save(model, strategy, directory: Path, tokenizer, backbone: str) -> None:
    """Weights under ``directory``: the adapter and head, or the whole model and its tokenizer."""
    from comp.models.hf.heads import PooledClassifier, save_head

    if strategy.saves_adapter:
        strategy.save(model, directory, backbone)
        return
    if isinstance(model, PooledClassifier):
        model.backbone.save_pretrained(directory)
        save_head(model, directory)
    else:
        model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def load(directory: Path, config, task: TaskInfo, resolved: str, tokenizer, strategy, precision: str, device):
    """The classifier saved in ``directory`` by :func:`save`, for inference."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    from comp.models.hf.heads import load_head

    directory = Path(directory)
    if strategy.saves_adapter:  # the base comes from the backbone, the adapter and head from the folder
        weights = strategy.weight_kwargs(precision, device)
        if config.pooling == "auto":
            base = load_pretrained(
                AutoModelForSequenceClassification,
                config.backbone,
                resolved,
                fresh_head=lambda line: None,
                **_label_kwargs(task),
                **weights,
            )
        else:
            base = _pooled(load_pretrained(AutoModel, config.backbone, resolved, **weights), config, task)
        align_pad_token(base, tokenizer)
        return strategy.load(base, directory)
    if config.pooling == "auto":
        return load_pretrained(AutoModelForSequenceClassification, str(directory), str(directory))
    model = _pooled(load_pretrained(AutoModel, str(directory), str(directory)), config, task)
    load_head(model, directory)
    return model
