"""Decoder LLMs on one GPU: peak memory and training speed of LoRA on a bf16 base against QLoRA
(4-bit NF4 base), for Llama-3.2-1B- and Gemma-2-2B-shaped models. Writes the `decoders` section
of docs/benchmarks.md.

The models are built from their configs with random weights (nothing is downloaded: speed and
memory do not depend on the values) and saved once to a temporary folder, so each variant loads
through comp's own path: ``from_pretrained`` with ``decoders.load_kwargs`` (bf16 weights, or
bitsandbytes 4-bit), ``decoders.wrap`` (LoRA r=16 on every linear layer, head trained), then the
training step the family's Trainer runs: bf16 autocast, non-reentrant gradient checkpointing, the
family's BCE loss, fused AdamW. Tweet-length inputs: batch 16 x 64 tokens, 28 labels. Each
variant runs in its own process, so peaks do not leak between them.

Target: QLoRA's peak GPU memory at most 40% of LoRA-bf16's for the 2B shape.

    .venv/bin/python bench/bench_decoders.py [--shapes llama-3.2-1b gemma-2-2b] [--steps 20]

Without CUDA it says so and exits (status 0). ``--allow-cpu --shapes tiny`` runs the same code on
a tiny shape on CPU to check the script, without writing the docs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_section

SHAPES = {
    # hidden sizes, layers, heads and vocabularies of the released models
    "llama-3.2-1b": (
        "llama",
        dict(
            vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
            num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True,
            max_position_embeddings=8192,
        ),
    ),
    "gemma-2-2b": (
        "gemma2",
        dict(
            vocab_size=256000, hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
            num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
            sliding_window=4096, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
            tie_word_embeddings=True, max_position_embeddings=8192,
        ),
    ),
    "tiny": (
        "llama",
        dict(
            vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        ),
    ),
}
VARIANTS = {"lora-bf16": "none", "qlora-4bit": "4bit"}
BATCH, LENGTH, LABELS = 16, 64, 28
TARGET = 0.40  # QLoRA peak / LoRA-bf16 peak for the 2B shape


def make_checkpoint(shape: str, folder: Path, device: str) -> None:
    """Random bf16 weights of ``shape`` saved as a causal LM, as hub checkpoints are."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kind, sizes = SHAPES[shape]
    config = AutoConfig.for_model(kind, **sizes)
    torch.manual_seed(0)
    with torch.device(device):  # initialising 2.6B weights is fast on the GPU, slow on the CPU
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def worker(shape: str, variant: str, folder: str, steps: int, device_name: str) -> dict:
    """One variant: build through comp's decoder path, train ``steps`` steps, measure."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from comp.backbones import load_pretrained
    from comp.config import build
    from comp.models import decoders
    from comp.models import transformer as T

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    precision = "bf16" if cuda else "fp32"
    quantization = VARIANTS[variant]
    config = build(
        T.Config,
        {"model": "transformer", "backbone": folder, "quantization": quantization, "precision": precision,
         "peft": {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}},
        "bench",
    )
    decoders.check_quantization(quantization, device)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = load_pretrained(
        AutoModelForSequenceClassification, folder, folder, num_labels=LABELS,
        problem_type="multi_label_classification", **decoders.load_kwargs(config, precision, device),
    )
    model.config.pad_token_id = 0
    model = decoders.wrap(model, config, shape).to(device)
    weights = torch.cuda.memory_allocated() if cuda else None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.activation_checkpointing_enable()  # as the Trainer does for peft configs (non-reentrant)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    vocab = model.config.vocab_size
    ids = torch.randint(1, vocab, (BATCH, LENGTH), device=device)
    mask = torch.ones_like(ids)
    labels = (torch.rand(BATCH, LABELS, device=device) < 0.1).float()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    def step():
        with autocast:
            logits = model(input_ids=ids, attention_mask=mask).logits
        loss = T.loss_value(logits, labels, "multilabel")
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    for _ in range(3):  # kernels chosen, allocator warmed
        step()
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {
        "shape": shape,
        "variant": variant,
        "trainable": trainable,
        "weights_gb": None if weights is None else weights / 2**30,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "samples_per_s": steps * BATCH / seconds,
    }


def run_variant(shape: str, variant: str, folder: Path, steps: int, device: str) -> dict:
    """``worker`` in a fresh process: a clean CUDA context per variant (an OOM stays there)."""
    command = [sys.executable, __file__, "--worker", shape, variant, str(folder), str(steps), device]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"{shape} {variant}: failed: {last}", file=sys.stderr)
        return {"shape": shape, "variant": variant, "error": last}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gb(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(results: list[dict], steps: int, gpu: str, command: str) -> str:
    import bitsandbytes
    import peft
    import torch
    import transformers

    lines = [
        "## Decoder LLMs: LoRA (bf16 base) vs QLoRA (4-bit base)",
        "",
        f"GPU: {gpu}; torch {torch.__version__}, transformers {transformers.__version__}, peft "
        f"{peft.__version__}, bitsandbytes {bitsandbytes.__version__}. Random weights in the released "
        f"models' shapes; LoRA r=16 on every linear layer + head; batch {BATCH} x {LENGTH} tokens, "
        f"{LABELS} labels, gradient checkpointing, bf16 autocast, fused AdamW; {steps} timed steps after 3 "
        "warm-up steps, each variant in its own process. Peak = torch.cuda.max_memory_allocated from "
        "loading to the last step.",
        "",
        "| shape | variant | trainable params | weights + adapter (GB) | peak (GB) | peak vs LoRA-bf16 | train samples/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    verdict = []
    for shape in dict.fromkeys(r["shape"] for r in results):
        rows = {r["variant"]: r for r in results if r["shape"] == shape}
        base = rows.get("lora-bf16", {}).get("peak_gb")
        for variant in VARIANTS:
            r = rows.get(variant)
            if r is None:
                continue
            if "error" in r:
                lines.append(f"| {shape} | {variant} | failed: {r['error'][:80]} | | | | |")
                continue
            ratio = f"{r['peak_gb'] / base:.0%}" if base and r.get("peak_gb") else "-"
            lines.append(
                f"| {shape} | {variant} | {r['trainable'] / 1e6:.1f}M | {_gb(r['weights_gb'])} | "
                f"{_gb(r['peak_gb'])} | {ratio} | {r['samples_per_s']:.1f} |"
            )
        q = rows.get("qlora-4bit", {}).get("peak_gb")
        if shape == "gemma-2-2b" and base and q:
            met = "met" if q / base <= TARGET else "missed"
            verdict.append(
                f"Target (QLoRA peak <= {TARGET:.0%} of LoRA-bf16's for the 2B shape): {met}, {q / base:.0%}."
            )
    lines += ["", *verdict, "", f"Command: `{command}`"]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        shape, variant, folder, steps, device = sys.argv[2:7]
        print(json.dumps(worker(shape, variant, folder, int(steps), device)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["llama-3.2-1b", "gemma-2-2b"], choices=sorted(SHAPES))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--allow-cpu", action="store_true", help="run on CPU to check the script; no docs")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print("bench_decoders: no CUDA GPU here, nothing measured (GPU memory and QLoRA speed need one); "
              "run it on a GPU machine: .venv/bin/python bench/bench_decoders.py")
        return
    device = "cuda" if cuda else "cpu"
    results = []
    for shape in args.shapes:
        with tempfile.TemporaryDirectory(prefix=f"bench-{shape}-") as folder:
            started = time.perf_counter()
            make_checkpoint(shape, Path(folder), device)
            print(f"{shape}: random checkpoint in {time.perf_counter() - started:.0f}s", flush=True)
            for variant in VARIANTS:
                result = run_variant(shape, variant, Path(folder), args.steps, device)
                results.append(result)
                print(json.dumps(result), flush=True)
    command = "python bench/bench_decoders.py " + " ".join(sys.argv[1:])
    text = report(results, args.steps, torch.cuda.get_device_name() if cuda else "none (CPU)", command.strip())
    print(text)
    if cuda:
        write_section("decoders", text)


if __name__ == "__main__":
    main()
