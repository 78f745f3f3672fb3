"""Every GPU figure in one command, under 8 minutes on one H200: `make gpu-check`.

Writes the `gpu` section of docs/benchmarks.md. Each section is a function in SECTIONS that returns
its markdown lines; to add one, write `section_NAME(args)` and add it
to SECTIONS. Models are built from configs with random weights (speed and memory do not depend on the
values; nothing is downloaded) and trained through comp's own path: `classifier.build` with the run's
strategy (bf16 base, or a 4-bit NF4 base with `strategies.Adapter`), `CompTrainer` with the
family's loss, fused AdamW, bf16 autocast, SDPA attention.

- encoder: RoBERTa-base-shaped bf16 fine-tuning throughput and MFU (model FLOPs utilisation) against
  the 790 TFLOP/s bf16 peak the target is stated for (target: at least 40%), eager and torch.compile;
- adapters: LoRA on a bf16 base vs QLoRA (4-bit base) on Llama-3.2-1B and Gemma-2-2B shapes: peak GPU
  memory and training samples/s, each variant in its own process so peaks do not mix;
- llm: the prompt family's scorer on a Llama-3.2-1B-shaped bf16 model (rows/s on 1,000 tweet-length rows,
  a 4-class Choice and a 28-label YesNo prompt), and one generative-family QLoRA fine-tuning run's peak
  memory and samples/s on the same shape;
- fsdp: FSDP on one GPU is skipped (sharding over one device measures nothing).

    .venv/bin/python bench/gpu_check.py [--sections encoder adapters] [--steps 40]
    .venv/bin/python bench/gpu_check.py --cpu-smoke      # tiny shapes on CPU: checks the script, no docs

Without CUDA (and without --cpu-smoke) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import types

from common import ROOT, write_section

PEAK_TFLOPS = 790.0  # bf16 dense peak the MFU target refers to
MFU_TARGET = 0.40
QLORA_TARGET = 0.40  # QLoRA peak / LoRA-bf16 peak for the 2B shape
SHAPES = {
    # hidden sizes, layers, heads and vocabularies of the released models
    "roberta-base": (
        "roberta",
        dict(
            vocab_size=50265,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=514,
            type_vocab_size=1,
        ),
    ),
    "llama-3.2-1b": (
        "llama",
        dict(
            vocab_size=128256,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
            tie_word_embeddings=True,
            max_position_embeddings=8192,
        ),
    ),
    "gemma-2-2b": (
        "gemma2",
        dict(
            vocab_size=256000,
            hidden_size=2304,
            intermediate_size=9216,
            num_hidden_layers=26,
            num_attention_heads=8,
            num_key_value_heads=4,
            head_dim=256,
            query_pre_attn_scalar=256,
            sliding_window=4096,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
            tie_word_embeddings=True,
            max_position_embeddings=8192,
        ),
    ),
    # --cpu-smoke stand-ins
    "tiny-roberta": (
        "roberta",
        dict(
            vocab_size=500,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            max_position_embeddings=130,
            type_vocab_size=1,
        ),
    ),
    "tiny-llama": (
        "llama",
        dict(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
        ),
    ),
}
VARIANTS = {"lora-bf16": "none", "qlora-4bit": "4bit"}


# ---- training through comp's path, timed -----------------------------------------------------------
def timed_training(
    model,
    *,
    batch: int,
    length: int,
    vocab: int,
    labels: int,
    steps: int,
    warmup: int,
    cuda: bool,
    compile: bool = False,
    checkpointing: bool = False,
    reset_peak: bool = True,
) -> dict:
    """``steps`` optimizer steps of ``CompTrainer`` on random token rows; samples/s after ``warmup`` steps,
    and the peak GPU memory (since the last reset: here, or the caller's when ``reset_peak`` is False)."""
    import numpy as np
    import torch
    from transformers import TrainerCallback, TrainingArguments, default_data_collator

    from comp.models.hf.losses import Loss
    from comp.models.hf.trainer import CompTrainer, param_groups

    rng = np.random.default_rng(0)
    rows = [
        {
            "input_ids": rng.integers(3, vocab, length),
            "attention_mask": np.ones(length, dtype=np.int64),
            "labels": (rng.random(labels) < 0.1).astype(np.float32),
        }
        for _ in range(batch * steps)
    ]
    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, steps):
                if cuda:
                    torch.cuda.synchronize()
                marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=1e-4,
            bf16=cuda,
            use_cpu=not cuda,
            save_strategy="no",
            report_to="none",
            logging_steps=steps,
            disable_tqdm=True,
            remove_unused_columns=False,
            activation_checkpointing=checkpointing,
            torch_compile=compile,
            dataloader_drop_last=True,
            log_level="error",
        )
        trainer = CompTrainer(
            model=model,
            args=args,
            train_dataset=rows,
            data_collator=default_data_collator,
            callbacks=[Clock()],
            loss=Loss("multilabel"),
            groups=lambda m, no_decay: param_groups(m, 1e-4, 0.01, 1.0, no_decay),
        )
        if cuda and reset_peak:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    seconds = marks[steps] - marks[warmup]
    return {
        "samples_per_s": batch * (steps - warmup) / seconds,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    }


def _model_config(shape: str):
    from transformers import AutoConfig

    kind, sizes = SHAPES[shape]
    return AutoConfig.for_model(kind, **sizes)


# ---- section: encoder throughput and MFU -----------------------------------------------------------
def section_encoder(args) -> list[str]:
    import torch
    from transformers import AutoModelForSequenceClassification

    cuda, shape = torch.cuda.is_available(), ("tiny-roberta" if args.cpu_smoke else "roberta-base")
    batch, length, labels = (4, 16, 4) if args.cpu_smoke else (64, 128, 28)
    config = _model_config(shape)
    rows = []
    for compiled in (False,) if args.cpu_smoke else (False, True):  # compiling on a CPU takes minutes
        torch.manual_seed(0)
        config.num_labels, config.problem_type = labels, "multi_label_classification"
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
        non_embedding = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
        result = timed_training(
            model,
            batch=batch,
            length=length,
            vocab=config.vocab_size,
            labels=labels,
            steps=args.steps,
            warmup=max(1, args.steps // 4),
            cuda=cuda,
            compile=compiled,
        )
        # training FLOPs per token: 6 x parameters (matmuls, forward + backward) + 12 x layers x width x length
        flops = 6 * non_embedding + 12 * config.num_hidden_layers * config.hidden_size * length
        tflops = flops * result["samples_per_s"] * length / 1e12
        rows.append((compiled, result, tflops))
        del model
        if cuda:
            torch.cuda.empty_cache()
    lines = [
        f"### Encoder: {shape}-shaped bf16 fine-tuning (batch {batch} x {length} tokens, {labels} labels)",
        "",
        "| path | samples/s | tokens/s | model TFLOP/s | MFU vs 790 TFLOP/s | peak GB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for compiled, r, tflops in rows:
        peak = "-" if r["peak_gb"] is None else f"{r['peak_gb']:.1f}"
        lines.append(
            f"| CompTrainer{', torch.compile' if compiled else ', eager'} | {r['samples_per_s']:.0f} | "
            f"{r['samples_per_s'] * length:.0f} | {tflops:.0f} | {tflops / PEAK_TFLOPS:.0%} | {peak} |"
        )
    best = max(t for _, _, t in rows) / PEAK_TFLOPS
    lines += [
        "",
        f"- MFU = (6 x non-embedding parameters + 12 x layers x hidden x length) FLOPs per token x tokens/s"
        f" / {PEAK_TFLOPS:g} TFLOP/s. Target at least {MFU_TARGET:.0%}: **{'met' if best >= MFU_TARGET else 'missed'}**"
        f" ({best:.0%}).",
    ]
    return lines


# ---- section: LoRA-bf16 vs QLoRA-4bit ----------------------------------------------------------------
def adapter_worker(shape: str, variant: str, folder: str, steps: int, cpu_smoke: bool) -> dict:
    """One variant in this process: built through comp's classifier path, trained ``steps`` steps."""
    import torch

    from comp.config import build
    from comp.models import transformer as T
    from comp.models.base import TaskInfo
    from comp.models.hf import classifier, strategies

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    batch, length, labels = (4, 16, 4) if cpu_smoke else (16, 64, 28)
    config = build(
        T.Config,
        {
            "backbone": folder,
            "quantization": VARIANTS[variant],
            "precision": "bf16" if cuda else "fp32",
            "peft": {"method": "lora", "r": 16, "alpha": 32, "dropout": 0.05},
        },
        "gpu_check",
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    strategy = strategies.choose(config)
    model = classifier.build(
        config,
        TaskInfo("multilabel", [str(i) for i in range(labels)]),
        folder,
        types.SimpleNamespace(pad_token_id=0),
        strategy,
        "bf16" if cuda else "fp32",
        device,
        lambda line: None,
    )
    if VARIANTS[variant] == "none":
        model.to(device)  # a 4-bit base is placed while loading; a bf16 one the Trainer would move
    weights = torch.cuda.memory_allocated() / 2**30 if cuda else None
    trainable, _ = strategies.count_parameters(model)
    result = timed_training(
        model,
        batch=batch,
        length=length,
        vocab=_model_config(shape).vocab_size,
        labels=labels,
        steps=steps,
        warmup=max(1, steps // 4),
        cuda=cuda,
        checkpointing=True,
        reset_peak=False,
    )
    return {"shape": shape, "variant": variant, "trainable": trainable, "weights_gb": weights, **result}


def section_adapters(args) -> list[str]:
    import torch

    cuda = torch.cuda.is_available()
    shapes = ["tiny-llama"] if args.cpu_smoke else ["llama-3.2-1b", "gemma-2-2b"]
    variants = ["lora-bf16"] if not cuda else list(VARIANTS)  # no 4-bit kernels on most CPUs
    results = []
    for shape in shapes:
        with tempfile.TemporaryDirectory(prefix=f"gpu-check-{shape}-") as folder:
            from transformers import AutoModelForCausalLM

            with torch.device("cuda" if cuda else "cpu"):  # 2.6B random weights initialise fast on the GPU
                model = AutoModelForCausalLM.from_config(_model_config(shape), dtype=torch.bfloat16)
            model.save_pretrained(folder)
            del model
            for variant in variants:
                command = [sys.executable, __file__, "--adapter-worker", shape, variant, folder, str(args.steps)]
                command += ["--cpu-smoke"] if args.cpu_smoke else []
                done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
                if done.returncode != 0:
                    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                    results.append({"shape": shape, "variant": variant, "error": last})
                else:
                    results.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(json.dumps(results[-1]), flush=True)
    lines = [
        "### Decoder LLMs: LoRA r 16 on a bf16 base vs QLoRA (4-bit NF4 base)",
        "",
        "Batch 16 x 64 tokens, 28 labels, every linear layer adapted, head trained, gradient checkpointing;",
        "peak = torch.cuda.max_memory_allocated from loading to the last step, each variant in its own process.",
        "",
        "| shape | variant | trainable params | weights + adapter GB | peak GB | peak vs LoRA-bf16 | samples/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    verdict = []
    for shape in shapes:
        rows = {r["variant"]: r for r in results if r["shape"] == shape}
        base = rows.get("lora-bf16", {}).get("peak_gb")
        for variant, r in rows.items():
            if "error" in r:
                lines.append(f"| {shape} | {variant} | failed: {r['error'][:80]} | | | | |")
                continue
            ratio = f"{r['peak_gb'] / base:.0%}" if base and r.get("peak_gb") else "-"
            gb = {k: "-" if r.get(k) is None else f"{r[k]:.2f}" for k in ("weights_gb", "peak_gb")}
            lines.append(
                f"| {shape} | {variant} | {r['trainable'] / 1e6:.1f}M | {gb['weights_gb']} | {gb['peak_gb']} | "
                f"{ratio} | {r['samples_per_s']:.1f} |"
            )
        q = rows.get("qlora-4bit", {}).get("peak_gb")
        if shape == "gemma-2-2b" and base and q:
            verdict.append(
                f"- target (QLoRA peak at most {QLORA_TARGET:.0%} of LoRA-bf16's, 2B shape): "
                f"**{'met' if q / base <= QLORA_TARGET else 'missed'}** ({q / base:.0%})."
            )
    return lines + ([""] + verdict if verdict else [])


# ---- section: the LLM families (issue 12): prompt scorer throughput, generative QLoRA step ---------------
def generative_worker(shape: str, folder: str, steps: int, cpu_smoke: bool) -> dict:
    """One generative-family QLoRA fine-tuning run in this process: the base loaded 4-bit through
    ``strategies.Adapter`` (bf16 LoRA on CPU), answer-only loss on trimmed logits, ``CompTrainer``."""
    import numpy as np
    import torch
    from transformers import TrainerCallback, TrainingArguments

    from comp.llm.sft import IGNORE
    from comp.models import generative as G
    from comp.models.hf import strategies
    from comp.models.hf.trainer import CompTrainer, param_groups
    from comp.models.labelling import load_causal_lm

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    batch, length, answer = (4, 16, 3) if cpu_smoke else (16, 96, 6)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    strategy = strategies.Adapter({"method": "lora", "r": 16, "alpha": 32, "dropout": 0.05}, "4bit" if cuda else "none")
    model = load_causal_lm(folder, folder, strategy.weight_kwargs("bf16" if cuda else "fp32", device), device)
    model = strategy.prepare(model, base_path=folder, task_type="CAUSAL_LM")
    model.config.use_cache = False
    trainable, _ = strategies.count_parameters(model)
    vocab = _model_config(shape).vocab_size
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(batch * steps):
        ids = rng.integers(3, vocab, length).tolist()
        rows.append({"input_ids": ids, "labels": [IGNORE] * (length - answer) + ids[-answer:], "weight": 1.0})
    marks, warmup = {}, max(1, steps // 4)

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, steps):
                if cuda:
                    torch.cuda.synchronize()
                marks[state.global_step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as scratch:
        targs = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=1e-4,
            bf16=cuda,
            use_cpu=not cuda,
            save_strategy="no",
            report_to="none",
            logging_steps=steps,
            disable_tqdm=True,
            remove_unused_columns=False,
            activation_checkpointing=True,
            dataloader_drop_last=True,
            log_level="error",
        )
        trainer = CompTrainer(
            model=model,
            args=targs,
            train_dataset=rows,
            data_collator=G.AnswerCollator(0, 8),
            callbacks=[Clock()],
            loss=G.lm_loss,
            groups=lambda m, no_decay: param_groups(m, 1e-4, 0.0, 1.0, no_decay),
        )
        trainer.train()
    return {
        "shape": shape,
        "trainable": trainable,
        "batch": batch,
        "length": length,
        "answer": answer,
        "samples_per_s": batch * (steps - warmup) / (marks[steps] - marks[warmup]),
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "quantization": strategy.quantization,
    }


def _score_prompt_rows(
    model, *, rows: int, head: int, row_length: int, vocab: int, labels: int, yes_no: bool, batch: int, cuda: bool
) -> dict:
    """The prompt family's scorer on random ids shaped like a labelling prompt: ``head`` shared tokens
    (instruction + few-shot examples), ``rows`` texts of about ``row_length`` tokens, and either one
    answer of 2 tokens per label (Choice) or a 10-token question + Yes / No per label (YesNo)."""
    import numpy as np
    import torch

    from comp.llm.scorer import CausalLMScorer

    rng = np.random.default_rng(0)
    head_ids = rng.integers(3, vocab, head).tolist()
    texts = [
        rng.integers(3, vocab, int(rng.integers(row_length // 2, row_length * 3 // 2))).tolist() for _ in range(rows)
    ]
    if yes_no:
        candidates = []
        for _ in range(labels):
            question = rng.integers(3, vocab, 10).tolist()
            candidates += [(question, [5]), (question, [6])]
    else:
        candidates = [([], rng.integers(3, vocab, 2).tolist()) for _ in range(labels)]
    scorer = CausalLMScorer(model, batch_size=batch, method="tree")
    scorer.score_ids(head_ids, texts[: min(rows, batch)], candidates)  # warm-up: kernels, allocator
    scorer.stats = type(scorer.stats)()
    if cuda:
        torch.cuda.synchronize()
    scorer.score_ids(head_ids, texts, candidates)
    if cuda:
        torch.cuda.synchronize()
    return {"rows_per_s": scorer.stats.rows_per_s, "tokens_per_s": scorer.stats.tokens_per_s}


def section_llm(args) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM

    cuda = torch.cuda.is_available()
    shape = "tiny-llama" if args.cpu_smoke else "llama-3.2-1b"
    rows, batch = (16, 8) if args.cpu_smoke else (1000, 64)
    dtype = torch.bfloat16 if cuda else torch.float32
    lines = [
        f"### LLM families: the prompt scorer and a generative QLoRA step ({shape} shape)",
        "",
        f"Prompt scorer: {rows} rows of ~32 tokens (16-48) after a 200-token shared head (instruction + few-shot",
        f"examples), tree layout, the head's KV cache reused, batch {batch}, {str(dtype).split('.')[-1]}, SDPA; "
        "tokens/s counts head + row + answers per row.",
        "",
        "| workload | rows/s | prompt tokens/s |",
        "|---|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix=f"gpu-check-llm-{shape}-") as folder:
        with torch.device("cuda" if cuda else "cpu"):
            model = AutoModelForCausalLM.from_config(_model_config(shape), dtype=dtype, attn_implementation="sdpa")
        model.eval()
        vocab = model.config.vocab_size
        for name, labels, yes_no in (("4 classes, Choice", 4, False), ("28 labels, YesNo", 28, True)):
            r = _score_prompt_rows(
                model,
                rows=rows,
                head=200,
                row_length=32,
                vocab=vocab,
                labels=labels,
                yes_no=yes_no,
                batch=batch,
                cuda=cuda,
            )
            lines.append(f"| {name} | {r['rows_per_s']:.1f} | {r['tokens_per_s']:,.0f} |")
            print(json.dumps({"workload": name, **r}), flush=True)
        model.save_pretrained(folder)
        del model
        if cuda:
            torch.cuda.empty_cache()
        command = [sys.executable, __file__, "--generative-worker", shape, folder, str(args.steps)]
        command += ["--cpu-smoke"] if args.cpu_smoke else []
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return lines + ["", f"Generative QLoRA step: failed: {last[:160]}"]
    g = json.loads(done.stdout.strip().splitlines()[-1])
    peak = "-" if g["peak_gb"] is None else f"{g['peak_gb']:.2f}"
    return lines + [
        "",
        "Generative fine-tuning (model: generative's path): base "
        f"{'4-bit NF4' if g['quantization'] == '4bit' else 'unquantised'},"
        f" LoRA r 16 on every linear layer ({g['trainable']:,} trainable), batch {g['batch']} x {g['length']}"
        f" tokens with the loss on the last {g['answer']}, logits only at the answer positions, gradient "
        "checkpointing.",
        "",
        "| samples/s | peak GB (from loading) |",
        "|---:|---:|",
        f"| {g['samples_per_s']:.1f} | {peak} |",
    ]


def section_fsdp(args) -> list[str]:
    return [
        "### FSDP",
        "",
        "Skipped: FSDP shards over processes; on one GPU it measures nothing. Its mapping onto the",
        "Trainer's settings (`distributed: fsdp`, FSDP-QLoRA with 4-bit weights stored in bf16) is unit-tested;",
        "accelerate runs FSDP on GPUs only, so it has not run in a session without them.",
    ]


SECTIONS = {"encoder": section_encoder, "adapters": section_adapters, "llm": section_llm, "fsdp": section_fsdp}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--adapter-worker":
        shape, variant, folder, steps = sys.argv[2:6]
        print(json.dumps(adapter_worker(shape, variant, folder, int(steps), "--cpu-smoke" in sys.argv)))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--generative-worker":
        shape, folder, steps = sys.argv[2:5]
        print(json.dumps(generative_worker(shape, folder, int(steps), "--cpu-smoke" in sys.argv)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on CPU to check the script; no docs")
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_smoke:
        print(
            "gpu_check: no CUDA GPU here, nothing measured; docs/benchmarks.md keeps 'not yet measured'. "
            "Run `make gpu-check` on a machine with one."
        )
        return 0
    if args.cpu_smoke:
        args.steps = min(args.steps, 3)
    started = time.perf_counter()
    gpu = torch.cuda.get_device_name() if cuda else "none (CPU smoke run)"
    import peft
    import transformers

    lines = [
        "## GPU figures (`make gpu-check`)",
        "",
        f"GPU: {gpu}; torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}. "
        "Random weights in the released models' shapes; every variant trained through comp's CompTrainer.",
        "",
    ]
    for name in args.sections:
        section_started = time.perf_counter()
        lines += SECTIONS[name](args) + ["", f"({name}: {time.perf_counter() - section_started:.0f} s)", ""]
        print(f"gpu_check: {name} done", flush=True)
    lines.append(
        f"Command: `.venv/bin/python bench/gpu_check.py` (all sections: {time.perf_counter() - started:.0f} s)."
    )
    text = "\n".join(lines)
    print(text)
    if cuda and not args.cpu_smoke:
        write_section("gpu", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
