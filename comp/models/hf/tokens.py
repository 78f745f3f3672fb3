"""Token ids: tokenised once per text (cached across folds and runs), truncated to any length later.

Truncation keeps the leading special tokens, the first tokens of the text, optionally its last
``tail`` tokens (head + tail truncation, for long documents whose end matters), and the trailing
special tokens and prompt-template words: ``[CLS] a b c d e [SEP]`` -> ``[CLS] a b e [SEP]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from comp.errors import ConfigError
from comp.models.hf.cache import TextCache, cache_folder
from comp.models.hf.hub import fingerprint

TEXT_FIELD = "{text}"


class PromptTemplate:
    """A template with ``{text}`` exactly once, e.g. ``"Tweet: {text}\\nEmotions:"``; None: texts as they are."""

    def __init__(self, template: str | None):
        if template is not None and template.count(TEXT_FIELD) != 1:
            raise ConfigError(
                f"prompt_template must contain {TEXT_FIELD} exactly once, got {template!r}; "
                'e.g. prompt_template: "Tweet: {text}\\nEmotions:"'
            )
        self.template = template
        self.head, self.tail = template.split(TEXT_FIELD) if template else ("", "")

    def apply(self, texts: Sequence[str]) -> list[str]:
        return [self.head + str(t) + self.tail for t in texts]

    def tail_tokens(self, tokenizer) -> int:
        """Tokens of the text after ``{text}``, which truncation keeps (a decoder classifies from the last
        token, so a long text loses its middle, not the prompt's end). Tokenised alone: a merge across
        the boundary may shift the count by one."""
        return len(tokenizer(self.tail, add_special_tokens=False)["input_ids"]) if self.tail else 0


class TokenIds:
    """Tokenise texts once (cached per text) and truncate to any ``max_length`` afterwards.

    Stored per text: its full length, then all its ids, or for a text longer than ``store_length``
    its first and last ``store_length`` ids, so that any head + tail split up to ``store_length``
    is exact. ``keep_tail`` tokens at the end survive truncation (special tokens, the template's
    closing words, and ``tail`` text tokens).
    """

    VERSION = 2

    def __init__(
        self,
        tokenizer,
        backbone_resolved: str,
        cache_dir: Path | None,
        writable: bool = True,
        template: PromptTemplate | None = None,
        tail: int = 0,
    ):
        self.tokenizer = tokenizer
        self.template = template or PromptTemplate(None)
        limit = getattr(tokenizer, "model_max_length", None) or 512
        self.store_length = int(min(limit, 8192))
        probe = "hello"
        with_special = tokenizer(probe, add_special_tokens=True)["input_ids"]
        plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
        self.n_prefix = next((i for i in range(len(with_special)) if with_special[i : i + len(plain)] == plain), 0)
        self.n_suffix = max(len(with_special) - len(plain) - self.n_prefix, 0) + self.template.tail_tokens(tokenizer)
        self.tail = int(tail)
        self.cache = None
        if cache_dir is not None:
            folder = cache_folder(
                cache_dir,
                "tokens",
                writable=writable,
                tokenizer=fingerprint(backbone_resolved, "tokenizer"),
                store_length=self.store_length,
                version=self.VERSION,
            )
            self.cache = TextCache(folder, writable=writable)

    def _tokenise(self, texts: list[str]) -> list[np.ndarray]:
        out, keep = [], self.store_length
        for start in range(0, len(texts), 4096):
            enc = self.tokenizer(texts[start : start + 4096], add_special_tokens=True, truncation=False, verbose=False)[
                "input_ids"
            ]
            for ids in enc:
                ids = np.asarray(ids, dtype=np.int64)
                stored = ids if len(ids) <= keep else np.concatenate([ids[:keep], ids[-keep:]])
                # the true length goes first so truncation can be counted after capping
                out.append(np.concatenate([[len(ids)], stored]).astype(np.int64))
        return out

    def encode(self, texts: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray]:
        """``(ids, full_lengths)`` of the template-wrapped texts: stored ids per text (see the class) and
        untruncated lengths. Pass each row through :meth:`truncate` before use."""
        texts = self.template.apply(texts)
        rows = self._tokenise(texts) if self.cache is None else self.cache.get(texts, self._tokenise)[0]
        lengths = np.array([int(r[0]) for r in rows], dtype=np.int64)
        return [r[1:] for r in rows], lengths

    def truncate(self, ids: np.ndarray, max_length: int) -> np.ndarray:
        """At most ``max_length`` of a text's stored ids. A stored row is longer than ``max_length``
        exactly when the text is (stored rows of long texts hold its first and last ``store_length``)."""
        if len(ids) <= max_length:
            return ids
        end = min(self.n_suffix + self.tail, max_length - self.n_prefix)
        head = ids[: max_length - end]
        return np.concatenate([head, ids[len(ids) - end :]]) if end else head

    def check_tail(self, max_length: int, where: str = "tail_tokens") -> None:
        room = max_length - self.n_prefix - self.n_suffix
        if self.tail >= room:
            raise ConfigError(
                f"{where} {self.tail} leaves no room for the head of a text within max_length {max_length} "
                f"({self.n_prefix + self.n_suffix} special/template tokens); lower tail_tokens below {room}"
            )


def sorted_order(lengths: Sequence[int]) -> np.ndarray:
    """Row indices longest first (an out-of-memory shows up at once, batches pad little)."""
    return np.argsort(-np.asarray(lengths), kind="stable")


def rows(
    ids: Sequence[np.ndarray], labels: np.ndarray | None = None, sample_weight: np.ndarray | None = None
) -> list[dict]:
    """Dataset rows for the Trainer's collator: ``{"input_ids", "labels"}``, plus ``"sample_weight"``
    (the loss's row weight) when given."""
    if labels is None:
        return [{"input_ids": r} for r in ids]
    labels = np.asarray(labels, dtype=np.float32)
    out = [{"input_ids": r, "labels": y} for r, y in zip(ids, labels, strict=True)]
    if sample_weight is not None:
        for row, w in zip(out, np.asarray(sample_weight, dtype=np.float32), strict=True):
            row["sample_weight"] = w
    return out


def pad_batch(rows: Sequence[np.ndarray], pad_id: int, multiple_of: int = 1):
    """Right-padded ``input_ids`` and ``attention_mask`` tensors, shape (batch, longest row), for code
    that batches by hand (the frozen encoder of ``model: embeddings``)."""
    import torch

    width = max(len(r) for r in rows)
    width = -(-width // multiple_of) * multiple_of
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def sorted_batches(lengths: Sequence[int], batch_size: int):
    """Row indices in batches of similar length, longest first."""
    order = sorted_order(lengths)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
