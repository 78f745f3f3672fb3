"""Token ids of a prompt by segment: the shared head once, each row's text and tail, each candidate.

A segment is tokenised where it stands: after the last few characters before it, keeping the
tokens that follow the left context's own tokens. This keeps SentencePiece's word-start marks
and byte-level BPE's leading spaces right (``"Answer:" + " joy"`` gives the ids of
``"Answer: joy"``, not of ``" joy"`` alone). Where a BPE merge would cross the boundary, the
boundary wins (the segment is tokenised alone): prefix caching needs a head whose ids do not
depend on the row, and the training examples of :mod:`comp.llm.sft` use the same ids, so
training and scoring always see the same tokens.

Truncation takes tokens from the end of the text only: the instruction, the few-shot examples,
the tail (answer prefix) and every candidate are always whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from comp.errors import ConfigError
from comp.llm.prompts import Candidate, Prompt

ANCHOR = 24  # characters of left context a segment is tokenised after


@dataclass
class Encoded:
    """A prompt's ids for ``n`` rows and ``m`` candidates.

    ``head``: shared ids (BOS included); ``rows[i]``: row i's text ids (truncated) + tail ids;
    ``candidates[j]``: ``(context ids, target ids)``; ``truncated``: (n,) bool, rows that lost
    text tokens; ``text_tokens``: (n,) text tokens kept per row.
    """

    head: list[int]
    rows: list[list[int]]
    candidates: list[tuple[list[int], list[int]]]
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    text_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def sequence(self, row: int, candidate: int) -> tuple[list[int], int]:
        """The whole ids of (row, candidate) and the number of scored (target) ids at its end."""
        context, target = self.candidates[candidate]
        return self.head + self.rows[row] + context + target, len(target)


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def continuation_ids(tokenizer, before: Sequence[str], segments: Sequence[str]) -> list[list[int]]:
    """Ids of ``segments[i]`` as tokenised after ``before[i]`` (see the module docstring)."""
    anchors = [b[-ANCHOR:] for b in before]
    whole = _ids(tokenizer, [a + s for a, s in zip(anchors, segments, strict=True)])
    distinct = sorted(set(anchors))
    left = dict(zip(distinct, _ids(tokenizer, distinct), strict=True))
    out, alone = [], []
    for i, (anchor, ids) in enumerate(zip(anchors, whole, strict=True)):
        prefix = left[anchor]
        if ids[: len(prefix)] == prefix:
            out.append(ids[len(prefix) :])
        else:
            out.append(None)
            alone.append(i)
    for i, ids in zip(alone, _ids(tokenizer, [segments[i] for i in alone]), strict=True):
        out[i] = ids
    return out


def head_ids(tokenizer, head: str) -> list[int]:
    """The head's ids with the tokenizer's BOS in front, once: chat templates write BOS as text,
    and ``add_special_tokens=True`` on top of that would give two."""
    ids = _ids(tokenizer, [head])[0] if head else []
    bos = tokenizer.bos_token_id
    if bos is not None and adds_bos(tokenizer) and ids[:1] != [bos]:
        ids = [bos, *ids]
    return ids


def adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]


def candidate_ids(tokenizer, prompt: Prompt, candidates: Sequence[Candidate]) -> list[tuple[list[int], list[int]]]:
    """``(context ids, target ids)`` of each candidate, tokenised after the prompt's tail."""
    before = prompt.head + "x" + prompt.tail  # the row's own end is unknown here; "x" stands for it
    contexts = continuation_ids(tokenizer, [before] * len(candidates), [c.context for c in candidates])
    targets = continuation_ids(tokenizer, [before + c.context for c in candidates], [c.target for c in candidates])
    for c, target in zip(candidates, targets, strict=True):
        if not target:
            raise ConfigError(f"the answer {c.target!r} has no tokens; give every label a non-empty answer")
    _check_prefixes(candidates, contexts, targets)
    return list(zip(contexts, targets, strict=True))


def _check_prefixes(candidates, contexts, targets) -> None:
    """Refuse answers of different labels where one's ids start the other's (``sad`` and
    ``sadness`` without an end marker): the shorter one's probability would include the longer's."""
    answers: dict[tuple[tuple[int, ...], tuple[int, ...]], Candidate] = {}
    for c, context, target in zip(candidates, contexts, targets, strict=True):
        answers.setdefault((tuple(context), tuple(target)), c)
    for (context, target), longer in answers.items():
        for k in range(1, len(target)):
            shorter = answers.get((context, target[:k]))
            if shorter is not None and shorter.label != longer.label:
                raise ConfigError(
                    f"the answer {shorter.target.strip()!r} (label {shorter.label}) is the start of "
                    f"{longer.target.strip()!r} (label {longer.label}), so its probability would include the "
                    "other's; end answers with the end-of-answer marker, or give the labels answers that differ"
                )


def _spaces_forward(prompt: Prompt, candidates: Sequence[Candidate]) -> tuple[Prompt, list[Candidate]]:
    """Spaces at the end of the tail or of a context move to the start of what follows: BPE
    tokenizers attach a space to the next word (``"Answer:" + " joy"``, not ``"Answer: " + "joy"``),
    so a boundary right after a space would split a word from its space."""
    tail = prompt.tail.rstrip(" \t")
    space = prompt.tail[len(tail) :]
    out = []
    for c in candidates:
        context = space + c.context if c.context else ""
        kept = context.rstrip(" \t")
        target = context[len(kept) :] + (c.target if c.context else space + c.target)
        out.append(Candidate(kept, target, c.label))
    return replace(prompt, tail=tail), out


def encode(
    tokenizer,
    prompt: Prompt,
    texts: Sequence[str],
    candidates: Sequence[Candidate],
    max_length: int,
) -> Encoded:
    """Ids of every row's prompt and of the candidates, within ``max_length`` tokens per
    (row, candidate) sequence; texts are stripped of surrounding whitespace (chat templates trim
    a turn's content) and truncated from their end where the sequence would not fit. A space
    that ends the head moves to the start of each text (see :func:`_spaces_forward`)."""
    prompt, candidates = _spaces_forward(prompt, candidates)
    head_space = prompt.head[len(prompt.head.rstrip(" \t")) :]
    prompt = replace(prompt, head=prompt.head[: len(prompt.head) - len(head_space)])
    texts = [head_space + str(t).strip() for t in texts]
    head = head_ids(tokenizer, prompt.head)
    cands = candidate_ids(tokenizer, prompt, candidates)
    longest = max((len(c) + len(t) for c, t in cands), default=0)
    text = continuation_ids(tokenizer, [prompt.head] * len(texts), texts)
    tail = continuation_ids(tokenizer, texts, [prompt.tail] * len(texts)) if prompt.tail else [[] for _ in texts]
    fixed = len(head) + longest + max((len(t) for t in tail), default=0)
    room = max_length - fixed
    if room < 1:
        raise ConfigError(
            f"the prompt leaves no room for the text: the instruction and examples take {len(head)} tokens, "
            f"the answer prefix and the longest answer {fixed - len(head)}, of max_length {max_length}; "
            "shorten the instruction, use fewer or shorter few-shot examples, or raise max_length"
        )
    kept = [ids[:room] for ids in text]
    return Encoded(
        head=head,
        rows=[k + t for k, t in zip(kept, tail, strict=True)],
        candidates=cands,
        truncated=np.array([len(k) < len(ids) for k, ids in zip(kept, text, strict=True)], dtype=bool),
        text_tokens=np.array([len(k) for k in kept], dtype=np.int64),
    )


def whole_ids(tokenizer, prompt: Prompt, text: str, candidate: Candidate) -> list[int]:
    """The ids of the whole (row, candidate) string tokenised in one go, BOS once: what a plain
    ``tokenizer(prompt + answer)`` gives, to compare the segment-wise ids with."""
    return head_ids(tokenizer, prompt.head + text.strip() + prompt.tail + candidate.context + candidate.target)
