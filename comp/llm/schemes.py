"""From label words to candidate answers, and from their log-probabilities to class probabilities.

Probabilities, not parsed strings: the model never generates; every label's answer is scored
under the model's own token probabilities, so every row gets a probability for every class and
an unparseable answer cannot exist.

:class:`Choice` (multiclass, binary): each class is answered by its word(s) followed by the
answer's end marker (the chat template's end-of-turn, or a newline), and scored by the **whole
sequence** log-probability of those tokens, not only the first token: labels that share a first
token (``sad`` / ``sadness``, ``dis``-gust / ``dis``-approval) stay apart, and the end marker
makes ``sad`` mean exactly "sad" rather than every answer that starts with it. A class with
several words (``"joy"``, ``"happiness"``) scores the log-sum-exp of its words' probabilities.
The class probabilities are a softmax over classes: ``P(c) = P(answer_c) / sum_k P(answer_k)``,
the model's distribution restricted to the valid answers.

:class:`YesNo` (multilabel): one question per label (``Is the emotion {label} expressed?``) and
``P(label) = P(Yes) / (P(Yes) + P(No))``. Each label gets its own probability from its own
question, independent of how many other labels apply, which is what per-class thresholds tune;
a single "list the emotions" answer would give ``P(first label named = c)``, which splits its
mass over the labels a text has. The cost is one question per label per row; with the row's
cache shared by the questions (:mod:`comp.llm.scorer`) only the question's few tokens are added
per label.

:class:`Choice` with ``none`` is the multilabel scheme for a model fine-tuned to answer with the
list of its labels (:mod:`comp.llm.sft`): trained on label lists in a shuffled order, the first
answer word is drawn from the row's labels, so ``P(first = c) = E[1{c in labels} / |labels|]``,
a monotone score of membership that thresholds can tune; ``none`` takes the empty rows' mass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from comp.errors import ConfigError
from comp.llm.prompts import LABEL, Candidate, Prompt


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    return (top + np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True))).squeeze(axis)


def _words(classes: Sequence[str], words: dict[str, Sequence[str]] | None) -> list[list[str]]:
    words = words or {}
    unknown = sorted(set(words) - set(classes))
    if unknown:
        raise ConfigError(
            f"answer words given for unknown labels: {', '.join(unknown)}; labels are: {', '.join(classes)}"
        )
    out = []
    for c in classes:
        these = [str(w) for w in words.get(c, [c])]
        if not these or any(not w.strip() for w in these):
            raise ConfigError(f"label {c}: its answer words must be non-empty, got {these!r}")
        out.append(these)
    return out


class Choice:
    """One answer among the classes (and ``none``, when given).

    ``words``: per class, the words that answer it (default: the class name); ``endings``: what
    may follow a word (default: the prompt's end marker; ``[""]`` scores the bare word; a
    multilabel list answer uses ``[end, ","]``: the first word is followed by the end or a
    separator). :meth:`proba` returns (n_rows, n_classes) probabilities that sum to 1 over the
    classes, or over the classes and ``none`` (its column is left out of the output).
    """

    def __init__(
        self,
        classes: Sequence[str],
        *,
        words: dict[str, Sequence[str]] | None = None,
        endings: Sequence[str] | None = None,
        none: str | None = None,
    ):
        self.classes = list(classes)
        self.words = _words(self.classes, words)
        if none is not None:
            self.words.append([none])
        self.endings = None if endings is None else list(endings)
        self.none = none
        self._groups: list[int] = []

    def candidates(self, prompt: Prompt) -> list[Candidate]:
        endings = self.endings if self.endings is not None else [prompt.end]
        out, self._groups = [], []
        names = [*self.classes, "none"] if self.none is not None else self.classes
        for k, these in enumerate(self.words):
            for word in these:
                for end in endings:
                    out.append(Candidate("", prompt.lead + word + end, label=names[k]))
                    self._groups.append(k)
        return out

    def proba(self, logprobs: np.ndarray) -> np.ndarray:
        """(n_rows, n_candidates) log-probabilities of :meth:`candidates` -> (n_rows, n_classes)."""
        logprobs = np.asarray(logprobs, dtype=np.float64)
        groups = np.asarray(self._groups)
        if logprobs.ndim != 2 or logprobs.shape[1] != len(groups):
            raise ValueError(f"expected (n_rows, {len(groups)}) log-probabilities, got {logprobs.shape}")
        scores = np.stack([_logsumexp(logprobs[:, groups == k], axis=1) for k in range(len(self.words))], axis=1)
        proba = np.exp(scores - _logsumexp(scores, axis=1)[:, None])
        return proba[:, : len(self.classes)]


class YesNo:
    """A yes/no question per label; the prompt must ask it (``question=`` in
    :func:`comp.llm.prompts.chat_prompt` / ``plain_prompt``). ``words``: the name a label goes by
    in the question (default: the class name). :meth:`proba` returns (n_rows, n_classes)
    independent probabilities ``P(yes) / (P(yes) + P(no))``."""

    def __init__(
        self,
        classes: Sequence[str],
        *,
        words: dict[str, str] | None = None,
        yes: str = "Yes",
        no: str = "No",
    ):
        self.classes = list(classes)
        self.names = [w[0] for w in _words(self.classes, {k: [v] for k, v in (words or {}).items()})]
        if not yes.strip() or not no.strip() or yes == no:
            raise ConfigError(f"yes/no answers must be two different non-empty words, got {yes!r} and {no!r}")
        self.yes, self.no = yes, no

    def candidates(self, prompt: Prompt) -> list[Candidate]:
        if not prompt.question:
            raise ConfigError(
                f"yes/no scoring asks one question per label; give the prompt a question with {LABEL}, "
                'e.g. question: "Is the emotion {label} expressed in this text?"'
            )
        out = []
        for name in self.names:
            context = prompt.question.replace(LABEL, name)
            out.append(Candidate(context, prompt.lead + self.yes, label="yes"))
            out.append(Candidate(context, prompt.lead + self.no, label="no"))
        return out

    def proba(self, logprobs: np.ndarray) -> np.ndarray:
        logprobs = np.asarray(logprobs, dtype=np.float64)
        if logprobs.ndim != 2 or logprobs.shape[1] != 2 * len(self.classes):
            raise ValueError(f"expected (n_rows, {2 * len(self.classes)}) log-probabilities, got {logprobs.shape}")
        margin = logprobs[:, 0::2] - logprobs[:, 1::2]
        return 1.0 / (1.0 + np.exp(-margin))
