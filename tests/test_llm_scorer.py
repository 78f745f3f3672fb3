"""The label scorer: prefix reuse and the tree / expand layouts give the naive path's numbers."""

from __future__ import annotations

import numpy as np
import pytest

from comp.errors import ConfigError
from comp.llm.backends import TransformersBackend, label_probabilities
from comp.llm.encoding import encode
from comp.llm.prompts import Candidate, chat_prompt, plain_prompt
from comp.llm.schemes import Choice, YesNo
from comp.llm.scorer import CausalLMScorer, build_trie
from tests.tiny_llms import tiny_llm

CLASSES = ["joy", "anger", "sadness", "fear"]
TEXTS = [
    "i love this game",
    "the bus was late and i hate it so much",
    "sad",
    "my phone broke today and i cry",
    "so scared of the exam on monday morning",
]
FP32 = 2e-5  # log-probability agreement between layouts in float32 (summation order differs)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma", "mistral"])
def llm(request):
    return tiny_llm(request.param)


def _encoded(tok, yes_no: bool):
    examples = [("happy day", "joy"), ("so angry", "anger")]
    if yes_no:
        prompt = chat_prompt(tok, "Tweet: {text}", examples=examples, question="Is the emotion {label} expressed?")
        scheme = YesNo(CLASSES)
    else:
        prompt = chat_prompt(tok, "Tweet: {text}\nLabels: {labels}", classes=CLASSES, examples=examples)
        scheme = Choice(CLASSES, words={"joy": ["joy", "happiness"]})
    return prompt, scheme, encode(tok, prompt, TEXTS, scheme.candidates(prompt), max_length=512)


@pytest.mark.parametrize("yes_no", [False, True], ids=["choice", "yes-no"])
def test_every_layout_gives_the_naive_log_probabilities(llm, yes_no):
    model, tok = llm
    _, _, enc = _encoded(tok, yes_no)
    naive = CausalLMScorer(model, method="naive", batch_size=7).score_ids(enc.head, enc.rows, enc.candidates)
    assert naive.shape == (len(TEXTS), len(enc.candidates)) and np.isfinite(naive).all()
    assert naive.std() > 0.1  # the candidates really differ: agreement below is not trivial
    for method in ("tree", "expand"):
        for reuse in (True, False):
            scorer = CausalLMScorer(model, method=method, reuse_prefix=reuse, batch_size=2, max_sequences=5)
            got = scorer.score_ids(enc.head, enc.rows, enc.candidates)
            np.testing.assert_allclose(got, naive, atol=FP32, rtol=0, err_msg=f"{method} reuse={reuse}")


def test_a_peft_adapter_scores_through_every_layout():
    """The generative family scores with its fine-tuned adapter on the base model."""
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_llm("qwen2")
    _, _, enc = _encoded(tok, yes_no=True)
    base = CausalLMScorer(model, method="naive").score_ids(enc.head, enc.rows, enc.candidates)
    config = LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    adapted = get_peft_model(model, config).eval()
    naive = CausalLMScorer(adapted, method="naive").score_ids(enc.head, enc.rows, enc.candidates)
    assert np.abs(naive - base).max() > 0.1  # the adapter is in the forward pass
    for method in ("tree", "expand"):
        got = CausalLMScorer(adapted, method=method).score_ids(enc.head, enc.rows, enc.candidates)
        np.testing.assert_allclose(got, naive, atol=FP32, rtol=0)


def test_naive_path_is_a_plain_forward_of_the_whole_sequence(llm):
    """The reference itself: log P(target) from one unbatched forward of the whole ids."""
    import torch

    model, tok = llm
    _, _, enc = _encoded(tok, yes_no=True)
    naive = CausalLMScorer(model, method="naive").score_ids(enc.head, enc.rows, enc.candidates)
    for i, j in [(0, 0), (1, 3), (4, 7)]:
        ids, n = enc.sequence(i, j)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        expected = sum(float(logp[p - 1, ids[p]]) for p in range(len(ids) - n, len(ids)))
        assert naive[i, j] == pytest.approx(expected, abs=FP32)


@pytest.mark.parametrize("yes_no", [False, True], ids=["choice", "yes-no"])
def test_bf16_prefix_reuse_within_bf16_tolerance(yes_no):
    import torch

    model, tok = tiny_llm("gemma")
    model = model.to(torch.bfloat16)
    _, _, enc = _encoded(tok, yes_no)
    naive = CausalLMScorer(model, method="naive").score_ids(enc.head, enc.rows, enc.candidates)
    for method in ("tree", "expand"):
        got = CausalLMScorer(model, method=method).score_ids(enc.head, enc.rows, enc.candidates)
        # bf16 keeps 8 significant bits: logits of size ~10 differ by a few hundredths between
        # kernels that sum in another order
        np.testing.assert_allclose(got, naive, atol=0.1, rtol=0)


def test_results_do_not_depend_on_batching_or_order():
    model, tok = tiny_llm("qwen2")
    _, _, enc = _encoded(tok, yes_no=False)
    whole = CausalLMScorer(model, batch_size=16).score_ids(enc.head, enc.rows, enc.candidates)
    one = CausalLMScorer(model, batch_size=1).score_ids(enc.head, enc.rows, enc.candidates)
    np.testing.assert_allclose(one, whole, atol=FP32, rtol=0)
    reversed_ = CausalLMScorer(model).score_ids(enc.head, enc.rows[::-1], enc.candidates)
    np.testing.assert_allclose(reversed_[::-1], whole, atol=FP32, rtol=0)


def test_empty_rows_and_empty_head():
    """A row with no tokens scores after the head's last token; no head works too (Qwen2 has no BOS)."""
    model, tok = tiny_llm("qwen2")
    cands = [([], [5, 6]), ([7], [8])]
    for head, rows in (([1, 2, 3], [[], [4, 5]]), ([], [[1, 2], [3]])):
        naive = CausalLMScorer(model, method="naive").score_ids(head, rows, cands)
        for method in ("tree", "expand"):
            got = CausalLMScorer(model, method=method).score_ids(head, rows, cands)
            np.testing.assert_allclose(got, naive, atol=FP32, rtol=0)


def test_probabilities_from_the_schemes(llm):
    model, tok = llm
    backend = TransformersBackend(model, tok)
    for yes_no in (False, True):
        prompt, scheme, _ = _encoded(tok, yes_no)
        proba = label_probabilities(backend, prompt, TEXTS, scheme)
        assert proba.shape == (len(TEXTS), len(CLASSES))
        assert ((proba >= 0) & (proba <= 1)).all()
        if not yes_no:
            np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    assert backend.stats.rows == 2 * len(TEXTS) and backend.stats.tokens_per_s > 0
    assert backend.stats.computed_tokens < backend.stats.prompt_tokens  # the head and rows were shared


def test_choice_and_yes_no_arithmetic():
    choice = Choice(["a", "b"], words={"a": ["a", "aa"]}, none="none", endings=["", "!"])
    prompt = plain_prompt("{text}:")
    cands = choice.candidates(prompt)
    assert [c.target for c in cands] == [" a", " a!", " aa", " aa!", " b", " b!", " none", " none!"]
    logp = np.log(np.array([[0.1, 0.1, 0.05, 0.05, 0.2, 0.0, 0.3, 0.2]]) + 1e-300)
    np.testing.assert_allclose(choice.proba(logp), [[0.3, 0.2]], atol=1e-9)  # none's 0.5 left out
    yes_no = YesNo(["a", "b"])
    margin = np.log(np.array([[0.6, 0.2, 0.1, 0.3]]))
    np.testing.assert_allclose(yes_no.proba(margin), [[0.75, 0.25]], atol=1e-9)
    with pytest.raises(ConfigError, match="asks one question per label"):
        yes_no.candidates(prompt)
    with pytest.raises(ConfigError, match="unknown labels: c"):
        Choice(["a"], words={"c": ["x"]})


def test_trie_shares_prefixes():
    trie = build_trie([[1, 2, 3], [1, 2, 4], [5]])
    assert trie.tokens == [1, 2, 3, 4, 5] and trie.parent == [-1, 0, 1, 1, -1] and trie.depth == [0, 1, 2, 2, 0]
    assert trie.paths == [[0, 1, 2], [0, 1, 3], [4]]


def test_scorer_settings_are_checked():
    model, tok = tiny_llm("llama", attn="eager")
    with pytest.raises(ConfigError, match="not one of tree, expand, naive"):
        CausalLMScorer(model, method="fast")
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ConfigError, match="needs eager or sdpa attention"):
        CausalLMScorer(model, method="tree")
    small, _ = tiny_llm("mistral", sliding_window=16)
    with pytest.raises(ConfigError, match="sliding attention window \\(16\\)"):
        CausalLMScorer(small).score_ids(list(range(1, 20)), [[3]], [([], [4])])
    with pytest.raises(ValueError, match="at least one target token"):
        CausalLMScorer(small).score_ids([1], [[3]], [([2], [])])
    assert Candidate("a", "b").context == "a"
