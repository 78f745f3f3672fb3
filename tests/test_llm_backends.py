"""Backends: a GGUF file written in the test loads through transformers (and llama.cpp when
installed) and scores like the model it came from; missing optional backends name their extra."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from comp.errors import ConfigError
from comp.llm import backends
from comp.llm.backends import TransformersBackend, label_probabilities, load_gguf
from comp.llm.prompts import chat_prompt
from comp.llm.schemes import Choice, YesNo
from tests.tiny_llms import tiny_llm, write_gguf

CLASSES = ["joy", "anger", "sadness", "fear"]
TEXTS = ["i love this game", "the bus was late and i hate it so much", "sad"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    pytest.importorskip("gguf")
    model, tok = tiny_llm("llama", hidden=64)
    path = write_gguf(model, tok, tmp_path_factory.mktemp("gguf") / "tiny-llama-f32.gguf")
    return path, model, tok


def test_a_gguf_file_loads_and_scores_like_its_source(gguf_file):
    import torch

    path, source, source_tok = gguf_file
    model, tok = load_gguf(path)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tok.chat_template == source_tok.chat_template and tok.eos_token == "<|eot_id|>"
    text = "<|begin_of_text|>i love this game, so much"
    ids = source_tok(text, add_special_tokens=False)["input_ids"]
    assert tok(text, add_special_tokens=False)["input_ids"] == ids
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.tensor([ids])).logits, source(torch.tensor([ids])).logits, atol=1e-5)
    prompt = chat_prompt(tok, "Tweet: {text}\nLabels: {labels}", classes=CLASSES)
    proba = label_probabilities(TransformersBackend(model, tok), prompt, TEXTS, Choice(CLASSES))
    expected = label_probabilities(TransformersBackend(source, source_tok), prompt, TEXTS, Choice(CLASSES))
    np.testing.assert_allclose(proba, expected, atol=1e-6)
    assert proba.shape == (3, 4)


def test_llama_cpp_scores_like_transformers(gguf_file):
    pytest.importorskip("llama_cpp")
    path, source, tok = gguf_file
    prompt = chat_prompt(tok, "Tweet: {text}", question="Is the emotion {label} expressed?")
    candidates = YesNo(CLASSES).candidates(prompt)
    expected = TransformersBackend(source, tok).score(prompt, TEXTS, candidates)
    # an fp32 KV cache (GGML type 0) so that only summation order differs
    backend = backends.LlamaCppBackend(path, n_ctx=512, n_threads=1, type_k=0, type_v=0)
    try:
        got = backend.score(prompt, TEXTS, candidates)
    finally:
        backend.close()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert backend.stats.rows == 3 and backend.stats.tokens_per_s > 0


@pytest.mark.parametrize(
    ("make", "extra"),
    [
        (lambda: backends.LlamaCppBackend("model.gguf"), "llama-cpp"),
        (lambda: backends.VLLMBackend("some/model"), "vllm"),
        (lambda: load_gguf("model.gguf"), "gguf"),
    ],
)
def test_a_missing_backend_names_its_extra(monkeypatch, make, extra):
    real = importlib.import_module

    def fail(name, *args):
        if name in backends.EXTRAS:
            raise ImportError(f"No module named '{name}'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fail)
    with pytest.raises(ConfigError, match=rf"is not installed; pip install 'comp\[{extra}\]'$"):
        make()


def test_missing_gguf_file_is_one_line(tmp_path):
    pytest.importorskip("gguf")
    with pytest.raises(ConfigError, match="does not exist"):
        load_gguf(tmp_path / "nope.gguf")
    (tmp_path / "bad.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(ConfigError, match="cannot load this GGUF file"):
        load_gguf(tmp_path / "bad.gguf")


def test_context_length_takes_the_smaller_limit():
    model, tok = tiny_llm("qwen2")
    assert backends.context_length(model, tok) == 512
    tok.model_max_length = int(1e30)  # "no limit", as many tokenizers say
    model.config.max_position_embeddings = 32768
    assert backends.context_length(model, tok) == 8192
