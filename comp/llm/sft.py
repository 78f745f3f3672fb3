"""Supervised fine-tuning examples for a model that answers with its labels.

An example is the chat-formatted conversation "user: instruction + text / assistant: labels":
the same :class:`comp.llm.prompts.Prompt` the scorer uses (so training and scoring see the same
ids, built by :mod:`comp.llm.encoding`), with the assistant's answer and its end-of-turn token
appended. ``labels`` are -100 everywhere except on the answer's tokens and the end-of-turn
token: the loss is on the assistant's tokens only, and the model learns to stop.

Pad, EOS and padding side for Llama, Qwen2, Gemma and Mistral:

- The labels mask comes from token positions, never from token ids. Padding with EOS (Llama 3
  and Mistral have no pad token) therefore cannot mask the answer's own EOS, the classic bug of
  a collator that sets ``labels[input_ids == pad_id] = -100``.
- BOS appears once: chat templates write it as text, so the ids are built with
  ``add_special_tokens=False`` and a missing BOS is added (:func:`comp.llm.encoding.head_ids`).
- :class:`SFTCollator` pads on the right for training (the answer's positions stay where they
  were); the scorer pads rows on the left itself. Neither reads ``tokenizer.padding_side``, so
  a tokenizer saved with either side behaves the same.

Why not TRL's dataset preparation: ``SFTTrainer`` tokenises each rendered conversation whole,
while the scorer needs the head's ids to be the same for every row (its KV cache is shared), so
the examples are built by the scorer's own encoder and can be handed to any Trainer (also to
``SFTTrainer`` with ``dataset_kwargs={"skip_prepare_dataset": True}`` and this collator). On the
Llama 3, Qwen2, Gemma and Mistral templates the ids and labels equal TRL's prompt/completion ones
(tested), except that TRL also trains the newline some templates write after the end-of-turn.

Rare labels are kept from vanishing with per-example loss weights (:func:`example_weights`):
an example weighs ``(n_most_common / n_its_rarest_label) ** power``, capped and normalised to a
mean of 1, and :func:`weighted_lm_loss` averages each example's answer tokens first, then takes
the weighted mean over examples (so a long answer does not outweigh a short one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from comp.errors import ConfigError
from comp.llm.encoding import encode
from comp.llm.prompts import Candidate, Prompt

IGNORE = -100  # the label value torch's cross-entropy skips


def answer_text(
    row: np.ndarray,
    classes: Sequence[str],
    *,
    none: str = "none",
    separator: str = ", ",
    rng: np.random.Generator | None = None,
) -> str:
    """The assistant's answer for one row of 0/1 labels: the names of its labels joined by
    ``separator`` (shuffled when ``rng`` is given, in class order otherwise), or ``none``."""
    names = [classes[i] for i in np.flatnonzero(np.asarray(row) > 0)]
    if rng is not None and len(names) > 1:
        names = [names[i] for i in rng.permutation(len(names))]
    return separator.join(names) if names else none


def answers(
    Y: np.ndarray,
    classes: Sequence[str],
    *,
    task: str = "multilabel",
    none: str = "none",
    separator: str = ", ",
    shuffle: bool = True,
    seed: int = 0,
) -> list[str]:
    """One answer per row of ``Y`` (n_rows, n_classes). Binary ``Y`` of one column answers with
    ``classes[1]`` or ``classes[0]``. Multilabel answers list the labels in a seeded random order
    when ``shuffle`` (see :mod:`comp.llm.schemes`: the first name is then a fair draw)."""
    Y = np.asarray(Y)
    if task == "binary":
        if len(classes) != 2:
            raise ValueError("a binary task answers with one of two class names")
        return [classes[int(v > 0)] for v in Y.reshape(len(Y), -1)[:, -1]]
    if task == "multiclass":
        return [classes[int(i)] for i in Y.argmax(axis=1)]
    rng = np.random.default_rng(seed) if shuffle else None
    return [answer_text(row, classes, none=none, separator=separator, rng=rng) for row in Y]


def sft_examples(
    tokenizer,
    prompt: Prompt,
    texts: Sequence[str],
    targets: Sequence[str],
    *,
    max_length: int,
    weights: Sequence[float] | None = None,
) -> list[dict]:
    """``{"input_ids", "labels"[, "weight"]}`` per row: ``prompt`` around the text, then
    ``prompt.lead + answer + prompt.end`` scored. Texts are truncated from their end so that the
    longest answer fits ``max_length``; the instruction and the answer are never cut."""
    if len(texts) != len(targets):
        raise ValueError(f"{len(texts)} texts but {len(targets)} answers")
    distinct = sorted(set(targets))
    where = {a: i for i, a in enumerate(distinct)}
    # one label for all: answers are training targets here, not competing candidates
    cands = [Candidate("", prompt.lead + a + prompt.end) for a in distinct]
    enc = encode(tokenizer, prompt, texts, cands, max_length)
    out = []
    for i, answer in enumerate(targets):
        context, target = enc.candidates[where[answer]]
        prefix = enc.head + enc.rows[i] + context
        example = {"input_ids": prefix + target, "labels": [IGNORE] * len(prefix) + target}
        if weights is not None:
            example["weight"] = float(weights[i])
        out.append(example)
    return out


def example_weights(Y: np.ndarray, *, power: float = 0.5, max_weight: float = 10.0) -> np.ndarray:
    """(n_rows,) loss weights: ``(count of the most common label / count of the row's rarest
    label) ** power``, capped at ``max_weight``, mean 1. Rows without a label count as a label
    of their own ("none"). ``power=0`` gives every row weight 1."""
    Y = np.asarray(Y) > 0
    if Y.ndim != 2:
        raise ValueError(f"Y must be (n_rows, n_classes), got shape {Y.shape}")
    if Y.shape[1] == 1:
        Y = np.concatenate([~Y, Y], axis=1)
    if max_weight < 1:
        raise ConfigError(f"max_weight must be at least 1, got {max_weight}")
    groups = np.concatenate([Y, ~Y.any(axis=1, keepdims=True)], axis=1)
    counts = groups.sum(axis=0).astype(float)
    scale = np.where(groups, (counts.max() / np.maximum(counts, 1.0))[None, :], 0.0)
    weights = np.minimum(scale.max(axis=1) ** power, max_weight)
    return weights / weights.mean()


def pad_id(tokenizer) -> int:
    """The id batches are padded with: the pad token, else EOS (safe: see the module docstring)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ConfigError("the tokenizer has neither a pad nor an EOS token to pad batches with")


@dataclass
class SFTCollator:
    """Right-padded ``input_ids``, ``attention_mask``, ``labels`` (-100 on padding) and, when the
    examples have them, ``weight`` (batch,) tensors."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.as_tensor(f["input_ids"])
            mask[i, :n] = 1
            labels[i, :n] = torch.as_tensor(f["labels"])
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if all("weight" in f for f in features):
            batch["weight"] = torch.tensor([float(f["weight"]) for f in features])
        return batch


def weighted_lm_loss(logits, labels, weights=None):
    """Causal-LM loss over the labelled tokens: each example's mean token loss, then the mean
    over examples weighted by ``weights`` (batch,) (uniform when None).

    ``logits``: (batch, length, vocab); ``labels``: (batch, length), -100 where not scored.
    """
    import torch

    shifted = logits[:, :-1].float()
    target = labels[:, 1:]
    tokens = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="none"
    ).view(target.shape)
    scored = (target != IGNORE).float()
    counts = scored.sum(1)
    per_example = (tokens * scored).sum(1) / counts.clamp(min=1)
    w = torch.ones_like(per_example) if weights is None else weights.to(per_example)
    w = w * (counts > 0)
    return (per_example * w).sum() / w.sum().clamp(min=1e-12)
