"""One scoring interface over the engines that run an LLM: transformers, llama.cpp, vLLM.

A backend turns ``(prompt, texts, candidates)`` into ``log P(candidate | prompt, text)``, shape
(n_rows, n_candidates): :meth:`Backend.score` encodes with the backend's Hugging Face tokenizer
(:mod:`comp.llm.encoding`: the same ids whatever the engine) and calls the engine's
:meth:`Backend.score_ids`. :func:`label_probabilities` adds a scheme on top.

- :class:`TransformersBackend`: any ``*ForCausalLM`` (CPU or GPU, bf16, 4/8-bit, peft adapters),
  through :class:`comp.llm.scorer.CausalLMScorer`. :func:`load_gguf` reads a GGUF file with
  transformers (``gguf_file=``; dequantised to the dtype asked for) for this backend.
- :class:`LlamaCppBackend`: a GGUF file run by llama-cpp-python (quantised kernels, CPU or GPU);
  the head's and each row's KV state is saved once and restored for every candidate.
- :class:`VLLMBackend`: vLLM on a GPU, with automatic prefix caching; the candidates' prompt
  log-probabilities come from ``prompt_logprobs``. Written against vLLM's documented offline API
  and **not tested here** (it needs a GPU); its behaviour is checked only by import guards.

A backend whose package is missing fails with one line naming the pip extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from comp.errors import ConfigError
from comp.llm.encoding import Encoded, encode
from comp.llm.prompts import Candidate, Prompt
from comp.llm.scorer import CausalLMScorer, ScoreStats

EXTRAS = {"llama_cpp": ("llama-cpp-python", "llama-cpp"), "vllm": ("vllm", "vllm"), "gguf": ("gguf", "gguf")}


def require(module: str, what: str):
    """Import ``module`` or raise a one-line ConfigError naming the comp extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package, extra = EXTRAS[module]
        raise ConfigError(
            f"{what} needs the {package} package, which is not installed; pip install 'comp[{extra}]'"
        ) from None


class Scheme(Protocol):
    def candidates(self, prompt: Prompt) -> list[Candidate]: ...
    def proba(self, logprobs: np.ndarray) -> np.ndarray: ...


class Backend:
    """``tokenizer``: a Hugging Face tokenizer; ``max_length``: tokens per (row, candidate)."""

    tokenizer = None
    max_length: int = 2048

    def __init__(self) -> None:
        self.stats = ScoreStats()
        self.last: Encoded | None = None

    def score(self, prompt: Prompt, texts: Sequence[str], candidates: Sequence[Candidate]) -> np.ndarray:
        """(n_rows, n_candidates) float64 ``log P(target | head, text, tail, context)``."""
        self.last = encode(self.tokenizer, prompt, texts, candidates, self.max_length)
        return self.score_ids(self.last.head, self.last.rows, self.last.candidates)

    def score_ids(self, head, rows, candidates) -> np.ndarray:
        raise NotImplementedError


def label_probabilities(backend: Backend, prompt: Prompt, texts: Sequence[str], scheme: Scheme) -> np.ndarray:
    """(n_rows, n_classes) class probabilities of ``texts`` under ``scheme`` (see :mod:`comp.llm.schemes`)."""
    return scheme.proba(backend.score(prompt, texts, scheme.candidates(prompt)))


def context_length(model, tokenizer, cap: int = 8192) -> int:
    """The tokens a sequence may hold: the model's position limit, the tokenizer's if smaller,
    capped at ``cap`` (label prompts are short; a huge limit would only size buffers)."""
    limits = [cap]
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for value in (getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)):
        if isinstance(value, int) and 0 < value < 10**8:
            limits.append(value)
    return min(limits)


class TransformersBackend(Backend):
    """A loaded transformers causal LM (see :class:`comp.llm.scorer.CausalLMScorer` for the options)."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_length: int | None = None,
        batch_size: int = 16,
        method: str = "tree",
        reuse_prefix: bool = True,
    ):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.max_length = max_length or context_length(model, tokenizer)
        self.scorer = CausalLMScorer(model, batch_size=batch_size, method=method, reuse_prefix=reuse_prefix)
        self.stats = self.scorer.stats

    def score_ids(self, head, rows, candidates) -> np.ndarray:
        return self.scorer.score_ids(head, rows, candidates)


def load_gguf(path: str | Path, *, dtype=None):
    """``(model, tokenizer)`` from a GGUF file through transformers (weights dequantised to
    ``dtype``, fp32 by default); the tokenizer and chat template come from the file's metadata."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require("gguf", "reading a GGUF file")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"GGUF file {path} does not exist")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: transformers cannot load this GGUF file: {first}") from None
    return model.eval(), tokenizer


class LlamaCppBackend(Backend):
    """A GGUF file run by llama-cpp-python; ``tokenizer``: the Hugging Face tokenizer for its
    vocabulary (default: read from the GGUF file by transformers), so ids match the other backends.

    The head is evaluated once and its state saved; each row continues from it and saves its
    own state, and each candidate continues from the row's. ``n_gpu_layers=-1`` offloads all;
    other keywords go to ``llama_cpp.Llama`` (e.g. ``type_k=0, type_v=0`` for an fp32 KV cache).
    """

    def __init__(
        self,
        path: str | Path,
        tokenizer=None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        **llama_kwargs,
    ):
        super().__init__()
        llama_cpp = require("llama_cpp", "backend: llama-cpp")
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"GGUF file {path} does not exist")
        if tokenizer is None:
            from transformers import AutoTokenizer

            require("gguf", "reading a GGUF file's tokenizer")
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        self.tokenizer = tokenizer
        self.max_length = n_ctx
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
            logits_all=True,
            verbose=False,
            seed=0,
            **llama_kwargs,
        )

    def close(self) -> None:
        """Free the model now (llama-cpp-python's own finaliser can fail at interpreter exit)."""
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None

    def _logprobs(self, start: int, tokens: Sequence[int]) -> float:
        """Sum of log P(tokens[k]) where scores row ``start + k`` holds the logits that predict it."""
        scores = np.asarray(self.llm.scores[start : start + len(tokens)], dtype=np.float64)
        top = scores.max(axis=1, keepdims=True)
        norm = top[:, 0] + np.log(np.exp(scores - top).sum(axis=1))
        return float((scores[np.arange(len(tokens)), list(tokens)] - norm).sum())

    def score_ids(self, head, rows, candidates) -> np.ndarray:
        import time

        started = time.perf_counter()
        out = np.zeros((len(rows), len(candidates)))
        llm = self.llm
        llm.reset()
        if head:
            llm.eval(list(head))
        head_state = llm.save_state()
        for i, row in enumerate(rows):
            llm.load_state(head_state)
            llm.eval(list(row))
            row_end = llm.n_tokens
            row_state = llm.save_state()
            for j, (context, target) in enumerate(candidates):
                llm.load_state(row_state)
                llm.eval(list(context) + list(target))
                # the logits at position p predict token p + 1; the target starts at row_end + len(context)
                out[i, j] = self._logprobs(row_end + len(context) - 1, target)
            self.stats.computed_tokens += len(row) + sum(len(c) + len(t) for c, t in candidates)
        self.stats.computed_tokens += len(head)
        self.stats.rows += len(rows)
        self.stats.prompt_tokens += sum(len(head) + len(r) + sum(len(c) + len(t) for c, t in candidates) for r in rows)
        self.stats.seconds += time.perf_counter() - started
        return out


class VLLMBackend(Backend):
    """vLLM with automatic prefix caching (untested here: no GPU). Every (row, candidate) is one
    request of its whole ids; vLLM reuses the cached blocks of the shared head and row, and
    ``prompt_logprobs=0`` returns each prompt token's own log-probability."""

    def __init__(self, model: str, tokenizer=None, *, max_length: int = 4096, **engine):
        super().__init__()
        vllm = require("vllm", "backend: vllm")
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.llm = vllm.LLM(model=model, enable_prefix_caching=True, max_model_len=max_length, **engine)
        self.params = vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)

    def score_ids(self, head, rows, candidates) -> np.ndarray:
        import time

        from vllm.inputs import TokensPrompt

        started = time.perf_counter()
        requests, spans = [], []
        for row in rows:
            for context, target in candidates:
                ids = [*head, *row, *context, *target]
                requests.append(TokensPrompt(prompt_token_ids=ids))
                spans.append((len(ids) - len(target), ids))
        outputs = self.llm.generate(requests, self.params, use_tqdm=False)
        flat = []
        for (start, ids), output in zip(spans, outputs, strict=True):
            logprobs = output.prompt_logprobs  # None for position 0, then {token_id: Logprob}
            flat.append(sum(logprobs[p][ids[p]].logprob for p in range(start, len(ids))))
        self.stats.rows += len(rows)
        self.stats.prompt_tokens += sum(len(head) + len(r) + sum(len(c) + len(t) for c, t in candidates) for r in rows)
        self.stats.seconds += time.perf_counter() - started
        return np.array(flat, dtype=np.float64).reshape(len(rows), len(candidates))
