"""Tiny random chat LLMs for tests: Llama-3-, Qwen2-, Gemma- and Mistral-shaped, no downloads.

Each family gets a tokenizer trained in the test with ``tokenizers`` (byte-level BPE for Llama 3
and Qwen2, SentencePiece-style Metaspace BPE for Gemma and Mistral), the family's special tokens,
BOS / pad conventions and chat template (the released templates' logic, minus tool calls), and a
causal LM with hidden size 32-64 built from the family's config class.
"""

from __future__ import annotations

import string
from pathlib import Path

from tests.tiny_models import CUES, FILLER

WORDS = (
    FILLER
    + [w for cues in CUES.values() for w in cues]
    + (
        "classify the emotion of this tweet answer is expressed yes no none labels user assistant model "
        "system you are a careful annotator text emotions which of these"
    ).split()
)

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# family: (special tokens, bos, eos, pad, chat template, SentencePiece-style?)
FAMILIES = {
    "llama": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        "<|eot_id|>",
        None,
        LLAMA3_TEMPLATE,
        False,
    ),
    "qwen2": (
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        None,
        "<|im_end|>",
        "<|endoftext|>",
        QWEN2_TEMPLATE,
        False,
    ),
    "gemma": (
        ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        "<bos>",
        "<eos>",
        "<pad>",
        GEMMA_TEMPLATE,
        True,
    ),
    "mistral": (["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>", None, MISTRAL_TEMPLATE, True),
}


def _corpus() -> list[str]:
    return [" ".join(WORDS[i:] + WORDS[:i]) for i in range(0, len(WORDS), 3)] + ["Answer: Yes. No.\n\n"]


def chat_tokenizer(family: str = "llama", vocab_size: int = 500):
    """A fast tokenizer with ``family``'s special tokens, BOS/EOS/pad and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special, bos, eos, pad, template, spm = FAMILIES[family]
    if spm:  # SentencePiece-like: words start with the ▁ mark; Mistral adds one at the start, Gemma not
        tok = Tokenizer(models.BPE(unk_token=special[special.index("<unk>")], byte_fallback=False))
        scheme = "first" if family == "mistral" else "never"
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=True)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme, split=True)
        alphabet = sorted(set("".join(_corpus())) | set("▁\n.,:?!'\"-()0123456789") | set(string.ascii_letters))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, initial_alphabet=alphabet)
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
    tok.train_from_iterator(_corpus(), trainer)
    if bos is not None:  # Llama, Gemma and Mistral tokenizers put BOS in front of every text
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    extra = {"unk_token": "<unk>"} if "<unk>" in special else {}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, model_max_length=512, **extra
    )
    tokenizer.chat_template = template
    return tokenizer


def tiny_config(family: str, tokenizer, hidden: int = 32, layers: int = 2, **overrides):
    """The family's config class at hidden size ``hidden`` (4 heads, 2 KV heads)."""
    from transformers import GemmaConfig, LlamaConfig, MistralConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "gemma": GemmaConfig, "mistral": MistralConfig}[family]
    sizes = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=family in ("qwen2", "gemma"),
    )
    return cls(**{**sizes, **overrides})


def tiny_llm(family: str = "llama", seed: int = 0, hidden: int = 32, attn: str = "sdpa", std: float = 0.3, **overrides):
    """``(model, tokenizer)``: a random causal LM of ``family`` in eval mode, fp32, and its tokenizer;
    weights drawn with standard deviation ``std`` (0.02, the usual init, for models that train)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = chat_tokenizer(family)
    config = tiny_config(family, tokenizer, hidden=hidden, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn)
    # random weights give near-uniform next-token distributions; a larger init spreads them, so
    # probability comparisons are not trivially equal
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, std)
    return model.eval(), tokenizer


def save_llm(folder: Path, family: str = "llama", seed: int = 0, **kwargs) -> Path:
    """Save a tiny ``family`` LLM and its tokenizer (with the chat template) to ``folder``
    (``kwargs``: :func:`tiny_llm`'s)."""
    model, tokenizer = tiny_llm(family, seed, **kwargs)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def _llama_cpp_permute(weights, n_head: int):
    """llama.cpp's row order for the q/k projections (its rotary embedding pairs rows differently)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(model, tokenizer, path: Path) -> Path:
    """Write a tiny Llama ``model`` and its byte-level BPE ``tokenizer`` as an F32 GGUF file, with
    the tensor names, q/k row order and tokenizer metadata llama.cpp's converter writes."""
    import json

    import gguf
    import numpy as np

    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    special = {t["content"]: t["id"] for t in spec["added_tokens"]}
    tokens = [None] * len(tokenizer)
    for token, index in [*vocab, *special.items()]:
        tokens[index] = token
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_add_bos_token(True)
    writer.add_chat_template(tokenizer.chat_template)

    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    for i in range(config.num_hidden_layers):
        for hf, short in names.items():
            w = state[f"model.layers.{i}.{hf}.weight"]
            if short == "attn_q":
                w = _llama_cpp_permute(w, config.num_attention_heads)
            elif short == "attn_k":
                w = _llama_cpp_permute(w, config.num_key_value_heads)
            writer.add_tensor(f"blk.{i}.{short}.weight", np.ascontiguousarray(w))
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    if not config.tie_word_embeddings:
        writer.add_tensor("output.weight", state["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
