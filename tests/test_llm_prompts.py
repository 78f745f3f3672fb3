"""Prompts through Llama 3 / Qwen2 / Gemma / Mistral chat templates, segment-wise token ids, truncation."""

from __future__ import annotations

import pytest

from comp.errors import ConfigError
from comp.llm.encoding import encode, head_ids, whole_ids
from comp.llm.prompts import Candidate, chat_prompt, format_labels, plain_prompt
from comp.llm.schemes import Choice, YesNo
from tests.tiny_llms import FAMILIES, chat_tokenizer

CLASSES = ["joy", "anger", "sadness", "fear"]
USER = "Which emotion does this tweet express? {text}\nLabels: {labels}"
TEXTS = ["i love this game", "the bus was late and i hate it so much", "sad", "  my phone  ", "Tweet: x\n\nsmile"]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tok(request):
    return chat_tokenizer(request.param)


def test_chat_prompt_splits_the_template_around_the_text(tok):
    prompt = chat_prompt(tok, USER, classes=CLASSES, examples=[("happy day", "joy")])
    user = USER.replace("{labels}", "joy, anger, sadness, fear")
    full = tok.apply_chat_template(
        [
            {"role": "user", "content": user.replace("{text}", "happy day")},
            {"role": "assistant", "content": "joy"},
            {"role": "user", "content": user.replace("{text}", "abc")},
        ],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert prompt.render("abc") == full
    assert "happy day" in prompt.head and prompt.tail.startswith("\nLabels: joy, anger")
    assert prompt.lead == ""
    ends = {"<|eot_id|>": "<|eot_id|>", "<|im_end|>": "<|im_end|>", "<eos>": "<end_of_turn>", "</s>": "</s>"}
    assert prompt.end == ends[tok.eos_token]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_system_text_is_a_system_turn_where_the_template_has_one(family):
    tok = chat_tokenizer(family)
    prompt = chat_prompt(tok, "Tweet: {text}", system="You are a careful annotator.")
    assert "system" in prompt.head and "You are a careful annotator." in prompt.head


@pytest.mark.parametrize("family", ["gemma", "mistral"])
def test_system_text_opens_the_first_user_turn_without_a_system_role(family):
    tok = chat_tokenizer(family)
    prompt = chat_prompt(tok, "Tweet: {text}", system="You are a careful annotator.")
    assert "system" not in prompt.head
    assert "You are a careful annotator.\n\nTweet:" in prompt.head


def test_a_question_per_label_follows_the_text(tok):
    prompt = chat_prompt(tok, "Tweet: {text}", question="Is the emotion {label} expressed?")
    assert prompt.tail == "\nIs the emotion "
    assert prompt.question.startswith("{label} expressed?")
    candidates = YesNo(CLASSES).candidates(prompt)
    assert [c.target for c in candidates[:2]] == ["Yes", "No"]
    assert "anger expressed?" in candidates[2].context


def test_segment_ids_equal_the_whole_string_ids(tok):
    """Head, text, tail and answer tokenised apart give the ids of the whole string."""
    for prompt in (
        chat_prompt(tok, USER, classes=CLASSES, examples=[("happy day", "joy"), ("so angry", "anger")]),
        chat_prompt(tok, "Tweet: {text}", question="Is {label} expressed?", answer_prefix="Answer:"),
        plain_prompt("Tweet: {text}\nEmotion:", examples=[("happy day", "joy")]),
        plain_prompt("Classify.\n\n{text}", question="\nIs {label} expressed? Answer:"),
    ):
        scheme = YesNo(CLASSES) if prompt.question else Choice(CLASSES)
        candidates = scheme.candidates(prompt)
        enc = encode(tok, prompt, TEXTS, candidates, max_length=512)
        for i, text in enumerate(TEXTS):
            for j, cand in enumerate(candidates):
                assert enc.sequence(i, j)[0] == whole_ids(tok, prompt, text, cand), (prompt, text, cand)


def test_bos_once(tok):
    prompt = chat_prompt(tok, "Tweet: {text}")
    ids = head_ids(tok, prompt.head)
    if tok.bos_token_id is not None:
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    plain = head_ids(tok, "Tweet:")
    assert (plain[0] == tok.bos_token_id) == (tok.bos_token_id is not None)


def test_truncation_cuts_the_text_never_the_instruction_or_answer(tok):
    prompt = chat_prompt(tok, "Classify the emotion.\nTweet: {text}", answer_prefix="Emotion:")
    candidates = Choice(CLASSES).candidates(prompt)
    long_text = " ".join(["the bus was late and i hate it"] * 40)
    short = encode(tok, prompt, ["sad day"], candidates, max_length=512)
    enc = encode(tok, prompt, [long_text, "sad day"], candidates, max_length=80)
    assert enc.truncated.tolist() == [True, False]
    longest = max(len(c) + len(t) for c, t in enc.candidates)
    assert len(enc.head) + len(enc.rows[0]) + longest <= 80
    assert enc.head == short.head and enc.candidates == short.candidates  # instruction and answers whole
    tail = short.rows[0][short.text_tokens[0] :]
    assert enc.rows[0][-len(tail) :] == tail  # the answer prefix ("Emotion:") survives
    kept = enc.rows[0][: enc.text_tokens[0]]
    full = encode(tok, prompt, [long_text], candidates, max_length=4096)
    assert kept == full.rows[0][: len(kept)]  # the text's start is kept, its end cut
    assert enc.rows[1] == short.rows[0]


def test_a_prompt_with_no_room_for_the_text_says_so():
    tok = chat_tokenizer("qwen2")
    prompt = chat_prompt(tok, "Classify the emotion of this tweet. " * 20 + "{text}")
    with pytest.raises(ConfigError, match="leaves no room for the text.*max_length 64"):
        encode(tok, prompt, ["hi"], Choice(CLASSES).candidates(prompt), max_length=64)


def test_template_errors_are_one_line():
    tok = chat_tokenizer("llama")
    with pytest.raises(ConfigError, match=r"must contain \{text\} exactly once"):
        chat_prompt(tok, "no placeholder")
    with pytest.raises(ConfigError, match=r"must contain \{label\}"):
        chat_prompt(tok, "{text}", question="Is it expressed?")
    with pytest.raises(ConfigError, match="no chat template"):
        tok2 = chat_tokenizer("llama")
        tok2.chat_template = None
        chat_prompt(tok2, "{text}")
    with pytest.raises(ConfigError, match="unknown labels: love"):
        format_labels(CLASSES, {"love": "x"})
    assert format_labels(["a", "b"], {"a": "first"}) == "- a: first\n- b"


def test_answers_that_start_alike_need_an_end_marker():
    tok = chat_tokenizer("llama")
    prompt = plain_prompt("Tweet: {text}\nEmotion:")
    bare = Choice(["sad", "sadness"], endings=[""])
    with pytest.raises(ConfigError, match="'sad' \\(label sad\\) is the start of 'sadness'"):
        encode(tok, prompt, ["x"], bare.candidates(prompt), max_length=128)
    ended = Choice(["sad", "sadness"])  # the default ends each answer with the prompt's end marker
    encode(tok, prompt, ["x"], ended.candidates(prompt), max_length=128)


def test_plain_prompt_spacing():
    prompt = plain_prompt("Tweet: {text}\nEmotion:", examples=[("happy day", "joy")])
    assert prompt.head == "Tweet: happy day\nEmotion: joy\n\nTweet: "
    assert prompt.tail == "\nEmotion:" and prompt.lead == " " and prompt.end == "\n"
    assert [c.target for c in Choice(["joy"]).candidates(prompt)] == [" joy\n"]
    assert Candidate("", "x").label == ""
