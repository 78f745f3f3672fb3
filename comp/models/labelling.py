"""What the two LLM families (``prompt`` and ``generative``) share: the prompt settings and their
checks, the answer names, the prompt and scheme built for a task, and the scoring cache.

A task's answers are its class names; a binary task's one probability column is the positive
class, so its prompt offers both names (``[negative, positive]``) and the positive's share is
the probability. Multilabel tasks are asked a yes/no question per label (``scheme: yesno``,
independent probabilities) or answer with the list of their labels (``scheme: choice``: the
model's first answer word, ``none`` for no label, see :mod:`comp.llm.schemes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from comp.config import ModelConfig
from comp.digest import sha256_bytes
from comp.errors import ConfigError
from comp.models.base import TaskInfo

DEFAULT_PROMPT = "Which of these labels apply to the text? Labels: {labels}\n\nText: {text}"
DEFAULT_QUESTION = "Does the label {label} apply to this text? Answer Yes or No."
PLAIN_ANSWER = "Answer:"  # the answer prefix of a prompt without a chat template
CHUNK_ROWS = 256  # rows per scoring chunk: the unit that is cached and resumed


@dataclass
class LabelPromptConfig(ModelConfig):
    """Prompt and scoring keys of both LLM families (the family adds its own)."""

    backbone: str = ""  # hub id or local folder of a causal LM (prompt family: also a .gguf file)
    system: str | None = None  # a system turn (folded into the first user turn where the template has none)
    prompt: str = DEFAULT_PROMPT  # the user turn: {text} once, {labels} optional
    question: str | None = None  # yes/no scheme: asked per label, with {label}; null: the default question
    answer_prefix: str = ""  # text the answer starts after, e.g. "Emotion:"
    label_descriptions: dict[str, str] | None = None  # label -> a short description, listed in {labels}
    label_words: dict[str, list[str]] | None = None  # label -> the words that answer it (default: its name)
    template: Literal["auto", "chat", "plain"] = "auto"  # auto: the tokenizer's chat template when it has one
    max_length: int | None = None  # tokens per scored sequence; null: the model's context (capped at 8192)
    score_batch_size: int = 16  # rows per scoring forward pass
    method: Literal["tree", "expand", "naive"] = "tree"  # see comp.llm.scorer
    reuse_prefix: bool = True  # the shared head's KV cache computed once
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    quantization: Literal["none", "8bit", "4bit"] = "none"
    seed: int = 0

    def check_prompt(self, where: str) -> None:
        if not str(self.backbone).strip():
            raise ConfigError(f"{where}: backbone is empty; give a hub id or a local folder of a causal LM")
        if self.prompt.count("{text}") != 1:
            raise ConfigError(f"{where}: prompt must contain {{text}} exactly once, got {self.prompt!r}")
        if self.question is not None and "{label}" not in self.question:
            raise ConfigError(f"{where}: question must contain {{label}}, got {self.question!r}")
        if self.max_length is not None and self.max_length < 16:
            raise ConfigError(f"{where}: max_length must be at least 16 tokens or null, got {self.max_length}")
        if self.score_batch_size < 1:
            raise ConfigError(f"{where}: score_batch_size must be at least 1, got {self.score_batch_size}")
        for key, value in (("label_words", self.label_words), ("label_descriptions", self.label_descriptions)):
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{where}: {key} must map label names to values, got {value!r}")
        for label, words in (self.label_words or {}).items():
            if isinstance(words, str) or not isinstance(words, list) or not words:
                raise ConfigError(f"{where}: label_words.{label} must be a non-empty list of words, got {words!r}")


def answer_names(task: TaskInfo) -> list[str]:
    """The names the model answers with: the classes, or ``[negative, positive]`` for binary."""
    if task.task == "binary":
        positive = task.classes[0]
        return [task.negative or f"not {positive}", positive]
    return list(task.classes)


def check_label_keys(c: LabelPromptConfig, task: TaskInfo) -> None:
    names = answer_names(task)
    for key in ("label_words", "label_descriptions"):
        unknown = sorted(set(getattr(c, key) or {}) - set(names))
        if unknown:
            raise ConfigError(f"{key} names unknown label(s) {', '.join(unknown)}; the labels are: {', '.join(names)}")


def use_chat(c: LabelPromptConfig, tokenizer) -> bool:
    from comp.llm.prompts import has_chat_template

    has = has_chat_template(tokenizer)
    if c.template == "chat" and not has:
        raise ConfigError(f"template: chat but backbone '{c.backbone}' has no chat template; use template: plain")
    return c.template == "chat" or (c.template == "auto" and has)


def build_prompt(
    c: LabelPromptConfig, tokenizer, task: TaskInfo, *, yes_no: bool, examples: Sequence[tuple[str, str]] = ()
):
    """The :class:`comp.llm.prompts.Prompt` of ``c`` for ``task``, with few-shot ``(text, answer)`` turns."""
    from comp.llm.prompts import chat_prompt, plain_prompt

    names = answer_names(task)
    question = (c.question or DEFAULT_QUESTION) if yes_no else None
    if use_chat(c, tokenizer):
        return chat_prompt(
            tokenizer,
            c.prompt,
            classes=names,
            descriptions=c.label_descriptions,
            examples=examples,
            system=c.system,
            question=question,
            answer_prefix=c.answer_prefix,
        )
    head = f"{c.system}\n\n" if c.system else ""
    prefix = c.answer_prefix or PLAIN_ANSWER
    if question is not None:
        return plain_prompt(
            head + c.prompt,
            classes=names,
            descriptions=c.label_descriptions,
            examples=examples,
            question=f"\n{question}\n{prefix}",
        )
    return plain_prompt(
        f"{head}{c.prompt}\n{prefix}", classes=names, descriptions=c.label_descriptions, examples=examples
    )


def build_scheme(c: LabelPromptConfig, task: TaskInfo, *, yes_no: bool, none: str = "none", separator: str = ", "):
    """The scheme turning answer log-probabilities into (n_rows, n_outputs) probabilities."""
    from comp.llm.schemes import Choice, YesNo

    names = answer_names(task)
    if yes_no:
        words = {k: v[0] for k, v in (c.label_words or {}).items()}
        return YesNo(names, words=words)
    if task.task == "multilabel":
        # a list answer: the first label named, then the end of the answer or the separator
        return _ListChoice(names, words=c.label_words, none=none, separator=separator.rstrip())
    return Choice(names, words=c.label_words)


class _ListChoice:
    """:class:`comp.llm.schemes.Choice` with ``none``, the first word followed by the answer's end or
    the list separator (its endings depend on the prompt's end marker, known only with the prompt)."""

    def __init__(self, names, *, words, none, separator):
        from comp.llm.schemes import Choice

        self._make = lambda end: Choice(names, words=words, none=none, endings=[end, separator])
        self._choice = None

    def candidates(self, prompt):
        self._choice = self._make(prompt.end)
        return self._choice.candidates(prompt)

    def proba(self, logprobs):
        return self._choice.proba(logprobs)


def to_outputs(P: np.ndarray, task: TaskInfo) -> np.ndarray:
    """Scheme probabilities over the answer names -> the task's columns (binary: P(positive))."""
    return P[:, 1:2] if task.task == "binary" else P


def scores_of(
    backend,
    prompt,
    texts: Sequence[str],
    candidates,
    *,
    cache_dir: Path | None,
    identity: str,
    log: Callable[[str], None],
    what: str,
) -> np.ndarray:
    """(n_rows, n_candidates) log-probabilities of ``texts``, scored in length-sorted chunks of
    :data:`CHUNK_ROWS` rows. With ``cache_dir`` each chunk is stored under a hash of ``identity``
    (the model and how it scores) and the chunk's token ids, so an interrupted fold resumes at its
    first missing chunk and a prompt scored before (the test set by every fold of a run whose test
    prompt is the same) is read back, bit for bit, instead of scored again."""
    from comp.atomic import write_npy
    from comp.llm.encoding import encode

    enc = encode(backend.tokenizer, prompt, texts, candidates, backend.max_length)
    if enc.truncated.any():
        log(
            f"{what}: {int(enc.truncated.sum())} of {len(texts)} texts were cut to fit max_length={backend.max_length} "
            "tokens (from the text's end; instruction, examples and answers are whole)"
        )
    out = np.zeros((len(texts), len(enc.candidates)))
    order = np.argsort([-len(r) for r in enc.rows], kind="stable")
    folder = Path(cache_dir) / "llm-scores" if cache_dir is not None else None
    shared = hashlib.sha256(repr((identity, enc.head, enc.candidates)).encode())
    stats, computed = backend.stats, 0
    for start in range(0, len(order), CHUNK_ROWS):
        chunk = order[start : start + CHUNK_ROWS]
        rows = [enc.rows[i] for i in chunk]
        path = None
        if folder is not None:
            digest = shared.copy()
            digest.update(repr(rows).encode())
            path = folder / f"{digest.hexdigest()[:32]}.npy"
            if path.is_file():
                try:
                    out[chunk] = np.load(path)
                    continue
                except (OSError, ValueError, EOFError):
                    pass  # a damaged chunk is scored again
        values = backend.score_ids(enc.head, rows, enc.candidates)
        computed += len(chunk)
        if path is not None:
            write_npy(path, values)
        out[chunk] = values
    if computed:
        log(
            f"{what}: scored {computed} of {len(texts)} rows ({stats.tokens_per_s:,.0f} prompt tokens/s, "
            f"{stats.rows_per_s:.1f} rows/s so far)"
        )
    elif len(texts):
        log(f"{what}: {len(texts)} rows read from the scoring cache")
    return out


def partial_rows(n: int, fraction: float | None, seed: int, fold: int) -> np.ndarray:
    """Row indices to score out of ``n``: all, or a seeded ``fraction`` (at least one row)."""
    if fraction is None or fraction >= 1:
        return np.arange(n)
    k = max(1, int(np.ceil(fraction * n)))
    rng = np.random.default_rng([seed, fold + 1, 7])
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def model_identity(*parts) -> str:
    return sha256_bytes(repr(parts).encode())[:16]


def load_causal_lm(backbone: str, resolved: str, weights: dict, device):
    """``AutoModelForCausalLM`` from ``resolved`` with ``weights`` (dtype, quantisation), on ``device``."""
    from transformers import AutoModelForCausalLM

    from comp.models.hf.hub import load_pretrained

    model = load_pretrained(AutoModelForCausalLM, backbone, resolved, **weights)
    if "device_map" not in weights:  # a quantised base is placed while loading
        model.to(device)
    return model
