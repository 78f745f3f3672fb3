"""A prompt as strings split around the row's text, so the part shared by every row is known.

Every row's prompt is ``head + text + tail``, and a candidate answer follows it. ``head`` holds
everything before the text that every row shares (system turn, instruction, the few-shot
examples, the opening of the user turn): it is encoded once and its KV cache reused. ``tail`` is
what follows the text (end of the user turn, the assistant header, an answer prefix).

With a chat template the strings come from ``tokenizer.apply_chat_template`` rendered once with a
placeholder in place of the text, then split at it, so the template (BOS, role headers,
end-of-turn markers) is exactly the model's own. Without one, a plain template with ``{text}``.

For per-label yes/no questions (multilabel), ``question`` is the rest of the prompt after
``tail``, with ``{label}`` where the label's name goes: each row is encoded once and each label's
question continues it.

Placeholders in templates: ``{text}`` (exactly once), ``{labels}`` (the label list, optional),
``{label}`` (in a question, once or more). They are replaced literally (other braces are kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from comp.errors import ConfigError

TEXT = "{text}"
LABELS = "{labels}"
LABEL = "{label}"
# private-use code points: never in a template or a tokenizer's special tokens
_TEXT_MARK = "\ue000\ue001"
_LABEL_MARK = "\ue002\ue003"
_ANSWER_MARK = "\ue004\ue005"


@dataclass(frozen=True)
class Prompt:
    """``head + text + tail [+ question with the label]`` then an answer.

    ``lead`` goes before an answer word (``" "`` after ``"Answer:"``; ``""`` at the start of a
    chat turn). ``end`` is the text that closes an answer (the chat template's end-of-turn
    marker, or a newline): answers scored with it must end exactly there.
    """

    head: str
    tail: str
    lead: str = ""
    end: str = "\n"
    question: str = ""

    def render(self, text: str, label: str | None = None) -> str:
        """The full prompt string for one row (and one label's question)."""
        out = self.head + text + self.tail
        if self.question:
            if label is None:
                raise ValueError("this prompt asks a question per label; pass label=")
            out += self.question.replace(LABEL, label)
        return out


@dataclass(frozen=True)
class Candidate:
    """A continuation of a row's prompt: ``context`` is read but not scored (a label's yes/no
    question), ``target`` is the answer whose log-probability is scored."""

    context: str
    target: str
    label: str = ""  # the class it votes for: answers of different labels must not be prefixes of each other


def format_labels(classes: Sequence[str], descriptions: dict[str, str] | None = None) -> str:
    """``"joy, anger, sadness"``, or one ``- name: description`` line per label."""
    if not descriptions:
        return ", ".join(classes)
    unknown = sorted(set(descriptions) - set(classes))
    if unknown:
        raise ConfigError(
            f"label descriptions name unknown labels: {', '.join(unknown)}; labels are: {', '.join(classes)}"
        )
    return "\n".join(f"- {c}: {descriptions[c]}" if descriptions.get(c) else f"- {c}" for c in classes)


def _fill(template: str, text: str, labels: str) -> str:
    return template.replace(LABELS, labels).replace(TEXT, text)


def _check(template: str, question: str | None, where: str) -> None:
    if template.count(TEXT) != 1:
        raise ConfigError(f"{where} must contain {TEXT} exactly once, got {template!r}")
    if question is not None and LABEL not in question:
        raise ConfigError(f"a per-label question must contain {LABEL}, got {question!r}")


def _lead(before: str) -> str:
    """A space before an answer that follows a word or ``:`` on the same line."""
    return " " if before and not before[-1].isspace() else ""


def _split(rendered: str, question: str | None) -> tuple[str, str, str]:
    head, after = rendered.split(_TEXT_MARK)
    if question is None:
        return head, after, ""
    cut = after.index(_LABEL_MARK)
    return head, after[:cut], after[cut:].replace(_LABEL_MARK, LABEL)


def plain_prompt(
    template: str,
    *,
    classes: Sequence[str] = (),
    descriptions: dict[str, str] | None = None,
    examples: Sequence[tuple[str, str]] = (),
    question: str | None = None,
    separator: str = "\n\n",
) -> Prompt:
    """A prompt without a chat template: ``template`` (``"Tweet: {text}\\nEmotion:"``), each
    few-shot ``(text, answer)`` rendered by the same template and answered, then the row.

    A ``question`` (``"\\nIs {label} expressed? Answer:"``) follows the filled template.
    """
    _check(template, question, "prompt template")
    labels = format_labels(classes, descriptions)
    filled = _fill(template, _TEXT_MARK, labels) + (question.replace(LABEL, _LABEL_MARK) if question else "")
    shots = ""
    for text, answer in examples:
        shot = _fill(template, text, labels)
        shots += shot + _lead(shot) + answer + separator
    head, tail, rest = _split(shots + filled, question)
    before_answer = rest or tail
    return Prompt(head=head, tail=tail, lead=_lead(before_answer), end="\n", question=rest)


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _render(tokenizer, messages: list[dict], generation: bool) -> str:
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
    except TemplateError as exc:
        raise ConfigError(f"the tokenizer's chat template refused the prompt: {exc}") from None


def chat_prompt(
    tokenizer,
    user: str,
    *,
    classes: Sequence[str] = (),
    descriptions: dict[str, str] | None = None,
    examples: Sequence[tuple[str, str]] = (),
    system: str | None = None,
    question: str | None = None,
    answer_prefix: str = "",
) -> Prompt:
    """A prompt through ``tokenizer``'s chat template: ``user`` (with ``{text}``) is the user turn,
    few-shot ``(text, answer)`` pairs become earlier user/assistant turns, and the assistant turn
    is opened (and prefilled with ``answer_prefix``) for the answer.

    ``system`` is folded into the first user turn for templates without a system role (Gemma,
    Mistral). A ``question`` (``"Is the emotion {label} expressed?"``) is appended to the user
    turn on a new line, per label.
    """
    if not has_chat_template(tokenizer):
        raise ConfigError("the tokenizer has no chat template; use a plain prompt template instead")
    _check(user, question, "the user prompt")
    labels = format_labels(classes, descriptions)
    lead = _lead(answer_prefix)

    def turns(final_user: str) -> list[dict]:
        messages = []
        for text, answer in examples:
            messages += [
                {"role": "user", "content": _fill(user, text, labels)},
                {"role": "assistant", "content": answer_prefix + lead + answer},
            ]
        messages.append({"role": "user", "content": final_user})
        if system:
            messages = _with_system(tokenizer, system, messages)
        return messages

    final = _fill(user, _TEXT_MARK, labels)
    if question is not None:
        final += "\n" + question.replace(LABEL, _LABEL_MARK)
    rendered = _render(tokenizer, turns(final), generation=True) + answer_prefix
    head, tail, rest = _split(rendered, question)
    return Prompt(head=head, tail=tail, lead=lead, end=chat_answer_end(tokenizer), question=rest)


def _with_system(tokenizer, system: str, messages: list[dict]) -> list[dict]:
    """A system turn where the template has a system role, else its text opens the first user turn."""
    from jinja2 import TemplateError

    with_system = [{"role": "system", "content": system}, *messages]
    try:
        tokenizer.apply_chat_template(with_system, tokenize=False)
        return with_system
    except TemplateError:
        first = {**messages[0], "content": system + "\n\n" + messages[0]["content"]}
        return [first, *messages[1:]]


def chat_answer_end(tokenizer) -> str:
    """The first token the chat template writes after an assistant answer: its end-of-turn marker
    (``<|eot_id|>``, ``<|im_end|>``, ``<end_of_turn>``, ``</s>``)."""
    user = [{"role": "user", "content": "x"}]
    prompt = _render(tokenizer, user, generation=True)
    full = _render(tokenizer, [*user, {"role": "assistant", "content": _ANSWER_MARK}], generation=False)
    if not full.startswith(prompt) or _ANSWER_MARK not in full:
        raise ConfigError(
            "the tokenizer's chat template renders a conversation differently with and without the "
            "assistant's answer, so the answer cannot be located; use a template whose generation "
            "prompt is a prefix of the answered conversation"
        )
    after = full.split(_ANSWER_MARK, 1)[1]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    if not ids:  # a template that writes nothing after the answer: the model stops with EOS
        if tokenizer.eos_token is None:
            raise ConfigError("the chat template writes nothing after an answer and the tokenizer has no EOS token")
        return tokenizer.eos_token
    # the end-of-turn token alone: what follows it (a newline) is the template's, not the answer's
    return tokenizer.decode(ids[:1])
