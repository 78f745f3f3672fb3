"""Prompt-scorer throughput on CPU: with and without reuse of the shared prompt prefix, side by side.
Writes the `prompt` section of docs/benchmarks.md.

A ~100M-parameter Llama-shaped model with random weights (hidden 768, 12 layers, 12 heads, 4 KV
heads, MLP 2048, vocabulary 32,000, tied embeddings: speed does not depend on the values) and a
byte-level BPE tokenizer trained on the dataset's own texts, with the Llama 3 chat template. Two
workloads, each on the same rows for every method:

- TweetEval emotion (4 classes, one answer): ``Choice`` over the class names with the
  end-of-turn marker, 8 few-shot examples in the prompt;
- GoEmotions (28 labels): ``YesNo``, one question per label, 4 few-shot examples.

Methods (comp.llm.scorer): ``naive`` (every row x answer sequence in full: no reuse at all),
``tree`` without the head's cache (each row's prompt once, the answers as a token trie in the same
pass), and ``tree`` / ``expand`` with the head (instruction + examples) encoded once and its KV
cache reused for every batch. Tokens/s counts, per row, the head, the row and each answer's tokens
once (the same count for every method), so the ratios are speed-ups.

    nice -n 10 .venv/bin/python bench/bench_prompt.py [--rows 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from common import ROOT, dataset, machine, write_section

sys.path.insert(0, str(ROOT))

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
SHAPE = dict(
    hidden_size=768,
    intermediate_size=2048,
    num_hidden_layers=12,
    num_attention_heads=12,
    num_key_value_heads=4,
    vocab_size=32000,
    max_position_embeddings=4096,
    tie_word_embeddings=True,
)
EMOTION = ["anger", "joy", "optimism", "sadness"]


def tokenizer_for(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=16000, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    bos = SPECIAL[0]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    out = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token="<|eot_id|>", model_max_length=4096)
    out.chat_template = LLAMA3_TEMPLATE
    return out


def model_for(tokenizer):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**SHAPE, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    return model, sum(p.numel() for p in model.parameters())


def workloads(rows: int):
    import pandas as pd

    from comp.llm.fewshot import select_examples
    from comp.llm.prompts import chat_prompt
    from comp.llm.schemes import Choice, YesNo

    out = []
    emotion, goemotions = dataset("tweeteval_emotion"), dataset("goemotions")
    if emotion is None or goemotions is None:
        raise SystemExit("bench_prompt: the shared TweetEval emotion and GoEmotions data are not there")
    e = pd.read_csv(emotion / "train.csv")
    g = pd.read_csv(goemotions / "train.csv")
    texts_all = list(e.text) + list(g.text[:5000])
    tok = tokenizer_for(texts_all)

    Y = np.eye(4, dtype=int)[e.label.to_numpy()]
    shots = select_examples(Y, 8, seed=0)
    examples = [(e.text[i].strip(), EMOTION[int(e.label[i])]) for i in shots]
    prompt = chat_prompt(
        tok,
        "Which emotion does this tweet express? Answer with one of: {labels}.\n\nTweet: {text}",
        classes=EMOTION,
        examples=examples,
        system="You are a careful annotator of emotions in tweets.",
    )
    scored = [t for i, t in enumerate(e.text) if i not in set(shots)][:rows]
    out.append(("TweetEval emotion: 4 classes, Choice, 8 examples", tok, prompt, scored, Choice(EMOTION)))

    labels = [c for c in g.columns if c not in ("id", "text")]
    GY = g[labels].to_numpy()
    shots = select_examples(GY, 4, seed=0)
    examples = [(g.text[i].strip(), ", ".join(np.array(labels)[GY[i] > 0]) or "none") for i in shots]
    prompt = chat_prompt(
        tok,
        "Which emotions does this comment express? Labels: {labels}.\n\nComment: {text}",
        classes=labels,
        examples=examples,
        question="Is the emotion {label} expressed in this comment?",
        system="You are a careful annotator of emotions in Reddit comments.",
    )
    scored = [t for i, t in enumerate(g.text) if i not in set(shots)][: max(rows // 2, 2)]
    out.append(("GoEmotions: 28 labels, YesNo per label, 4 examples", tok, prompt, scored, YesNo(labels)))
    return out


METHODS = [
    ("naive: no reuse", dict(method="naive", reuse_prefix=False)),
    ("tree, head recomputed per row", dict(method="tree", reuse_prefix=False)),
    ("tree + head KV cache reused", dict(method="tree", reuse_prefix=True)),
    ("expand + head KV cache reused", dict(method="expand", reuse_prefix=True)),
]


def measure(model, tok, prompt, texts, scheme, batch_size: int, naive: bool) -> list[dict]:
    from comp.llm.backends import TransformersBackend

    candidates = scheme.candidates(prompt)
    results, reference = [], None
    for name, options in METHODS if naive else METHODS[1:]:
        backend = TransformersBackend(model, tok, batch_size=batch_size, **options)
        backend.score(prompt, texts[:1], candidates)  # warm-up: kernels, allocator, the head's cache
        backend.scorer.stats.__init__()
        started = time.perf_counter()
        logp = backend.score(prompt, texts, candidates)
        seconds = time.perf_counter() - started
        stats = backend.scorer.stats
        reference = logp if reference is None else reference
        results.append(
            dict(
                method=name,
                seconds=seconds,
                rows=stats.rows,
                tokens_per_s=stats.prompt_tokens / seconds,
                rows_per_s=stats.rows / seconds,
                prompt_tokens=stats.prompt_tokens,
                computed=stats.computed_tokens,
                max_diff=float(np.abs(logp - reference).max()),
                head=len(backend.last.head),
                row=float(np.mean([len(r) for r in backend.last.rows])),
                answers=len(candidates),
                answer_tokens=sum(len(c) + len(t) for c, t in backend.last.candidates),
                naive_tokens=sum(
                    len(backend.last.head) + len(r) + len(c) + len(t)
                    for r in backend.last.rows
                    for c, t in backend.last.candidates
                ),
            )
        )
        print(results[-1], flush=True)
    return results


def report(sections, params, threads, load, command) -> str:
    import torch
    import transformers

    lines = [
        "## Prompt scorer: tokens/s with and without prefix reuse (CPU)",
        "",
        f"A {params / 1e6:.0f}M-parameter Llama-shaped model with random weights (hidden 768, 12 layers, "
        "12 heads / 4 KV heads, MLP 2048, vocabulary 32,000), fp32, SDPA attention, on "
        f"{machine()}, {threads} torch threads; 1-minute load average {load:.1f} at the start (the CPU is "
        f"shared, so absolute figures are noisy; each workload's methods run back to back on the same rows). "
        f"torch {torch.__version__}, transformers {transformers.__version__}. Tokenizer: byte-level BPE "
        "trained on the datasets' texts, Llama 3 chat template. Tokens/s counts per row the shared head, "
        'the row and each answer\'s tokens once, the same for every method; "computed" is what went '
        "through the model. Max abs diff is the largest log-probability difference to the first method "
        "of its table.",
        "",
    ]
    for title, results in sections:
        r0 = results[0]
        lines += [
            f"**{title}**: {r0['rows']} rows; head {r0['head']} tokens, row {r0['row']:.0f} tokens on average, "
            f"{r0['answers']} answers of {r0['answer_tokens']} tokens in all.",
            "",
            "| method | rows/s | tokens/s | speed-up | tokens computed | max abs diff |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        if not results[0]["method"].startswith("naive"):
            lines.append(f"| naive: no reuse | not run | | | {r0['naive_tokens']:,} | |")
        for r in results:
            lines.append(
                f"| {r['method']} | {r['rows_per_s']:.2f} | {r['tokens_per_s']:,.0f} | "
                f"{r['tokens_per_s'] / r0['tokens_per_s']:.1f}x | {r['computed']:,} | {r['max_diff']:.1e} |"
            )
        lines.append("")
    naive = next(r for _, results in sections for r in results if r["method"].startswith("naive"))
    rate = naive["computed"] / naive["seconds"]  # tokens through the model per second, no reuse
    skipped = [results[0] for _, results in sections if not results[0]["method"].startswith("naive")]
    lines.append(
        "Speed-ups are against the first method timed in each table. With yes/no questions the per-label "
        "questions dominate (each label's own words and the assistant header after them, for every row), "
        "and no layout can share them across labels or rows; the head's cache still halves the work."
    )
    for r in skipped:
        lines.append(
            f"The 28-label workload's naive path is not timed: it runs the whole prompt once per answer "
            f"({r['answers']} per row), {r['naive_tokens']:,} tokens, about {r['naive_tokens'] / rate / 60:.0f} "
            f"minutes at the first table's naive rate ({rate:,.0f} computed tokens/s)."
        )
    lines.append("")
    lines.append(f"Command: `{command}`")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8, help="rows of the 4-class workload (half for the 28-label one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    sections, params = [], 0
    for title, tok, prompt, texts, scheme in workloads(args.rows):
        model, params = model_for(tok)
        print(title, flush=True)
        naive = title.startswith("TweetEval")  # the 28-label naive path would run for hours on a CPU
        sections.append((title, measure(model, tok, prompt, texts, scheme, args.batch_size, naive)))
    command = "nice -n 10 .venv/bin/python bench/bench_prompt.py " + " ".join(sys.argv[1:])
    text = report(sections, params, args.threads, load, command.strip())
    print(text)
    if not args.no_write:
        write_section("prompt", text)


if __name__ == "__main__":
    main()
