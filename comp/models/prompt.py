"""`model: prompt` — zero- and few-shot labelling by an instruction-tuned LLM, without training.

Every row's prompt is the config's instruction around the text, through the tokenizer's chat
template (or a plain template), and every class is **scored, never generated**: the model's own
log-probability of each label's answer (:mod:`comp.llm.schemes`), so each row gets a probability
per class that thresholds can tune, and an unparseable answer cannot exist.

- multiclass / binary: one answer among the class names (``scheme: choice``), a softmax over the
  valid answers' whole-sequence probabilities; binary offers ``[negative, positive]`` and keeps
  P(positive).
- multilabel: a yes/no question per label (``scheme: yesno``, the default),
  ``P(label) = P(Yes) / (P(Yes) + P(No))``: each label's own probability, independent of how many
  others apply. ``scheme: choice`` asks for the list of labels instead (the first word named).

Few-shot examples (``few_shot: k``) for fold k are drawn only from rows outside fold k (class-
covering, seeded: :mod:`comp.llm.fewshot`), so no OOF row is scored with its own label in the
prompt. Test rows are scored with **one prompt whose examples are drawn from all of train** (the
same k and seed): every fold's test predictions are then the same prompt's, computed once (the
scoring cache) instead of K times, and of the same kind as the folds' prompts, so the thresholds
tuned on the OOF carry over. ``comp predict`` uses that prompt too.

Scoring is batched, length-sorted, with the shared head's KV cache reused (:mod:`comp.llm.scorer`),
in chunks of rows stored in the workspace cache: a fold killed mid-way resumes at its first
unscored chunk, and the same prompt on the same rows is never scored twice.

``score_rows: 0.1`` scores a seeded tenth of each fold's held-out rows for a quick look: the run's
CV is computed on those rows, its OOF file holds NaN elsewhere, and the run is refused by name for
blending, thresholds and submission.

Backends: transformers (CPU or GPU, bf16, 4/8-bit; a ``.gguf`` backbone is read by transformers
through ``gguf_file=``), ``backend: llama-cpp`` (a ``.gguf`` file run by llama-cpp-python), and
``backend: vllm`` (a GPU, prefix caching). A missing one names the pip extra.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import numpy as np

from comp.atomic import write_text
from comp.errors import ConfigError, RunError
from comp.models.base import FoldContext, TaskInfo
from comp.models.hf.hub import backbone_inputs as inputs  # noqa: F401 - the family hook: run.yaml records it
from comp.models.labelling import LabelPromptConfig

SAVED = "comp_prompt.json"
_LOADED: dict[str, tuple] = {}  # the loaded backend of this process, by what loads it


@dataclass
class Config(LabelPromptConfig):
    model: str = "prompt"
    scheme: Literal["auto", "choice", "yesno"] = "auto"  # auto: yesno for multilabel, choice otherwise
    few_shot: int = 0  # examples in the prompt, drawn per fold from the other folds' rows
    few_shot_max_chars: int = 600  # longer texts are not used as examples (the prompt is shared by every row)
    score_rows: float | None = None  # a fraction of each fold's held-out rows: a quick, partial OOF
    backend: Literal["transformers", "llama-cpp", "vllm"] = "transformers"
    n_gpu_layers: int = -1  # llama-cpp: layers offloaded to the GPU (-1: all, where llama-cpp has a GPU build)
    cache_scores: bool = True  # store scored chunks in the workspace cache (resume, the test prompt once)

    def check(self, where: str) -> None:
        self.check_prompt(where)
        if self.few_shot < 0:
            raise ConfigError(f"{where}: few_shot must be 0 or more examples, got {self.few_shot}")
        if self.few_shot_max_chars < 1:
            raise ConfigError(f"{where}: few_shot_max_chars must be positive, got {self.few_shot_max_chars}")
        if self.score_rows is not None and not 0 < self.score_rows <= 1:
            raise ConfigError(f"{where}: score_rows must be a fraction in (0, 1] or null, got {self.score_rows}")
        gguf = is_gguf(self.backbone)
        if self.backend == "llama-cpp" and not gguf:
            raise ConfigError(f"{where}: backend: llama-cpp runs a .gguf file; point backbone at one")
        if self.backend == "vllm" and gguf:
            raise ConfigError(
                f"{where}: backend: vllm takes a hub id or folder; use backend: llama-cpp for a .gguf file"
            )
        if gguf and self.quantization != "none":
            raise ConfigError(f"{where}: a .gguf file is quantised already; set quantization: none")


def is_gguf(backbone: str) -> bool:
    return str(backbone).strip().lower().endswith(".gguf")


def _yes_no(config: Config, task: TaskInfo) -> bool:
    return config.scheme == "yesno" or (config.scheme == "auto" and task.task == "multilabel")


def preflight(config: Config, task: TaskInfo) -> None:
    """Before any fold: the backend's package, the model and tokenizer (no weights read), device and
    precision, the label keys, and a prompt built and encoded as the folds will build it."""
    from comp.llm.backends import require
    from comp.models import labelling

    c = config
    labelling.check_label_keys(c, task)
    if _yes_no(c, task) and task.task != "multilabel":
        raise ConfigError(
            f"scheme: yesno gives independent per-label probabilities, for multilabel tasks; this task "
            f"is {task.task}: use scheme: choice (or auto)"
        )
    if c.backend == "llama-cpp":
        require("llama_cpp", "backend: llama-cpp")
    if c.backend == "vllm":
        require("vllm", "backend: vllm")
    if is_gguf(c.backbone):
        require("gguf", "reading a GGUF file")
        path = Path(c.backbone).expanduser()
        if not path.is_file():
            raise ConfigError(f"backbone: GGUF file {path} does not exist")
        tokenizer = _gguf_tokenizer(path)
        limit = c.max_length or 2048
    else:
        from comp.llm.backends import context_length
        from comp.models.hf import hub

        resolved = hub.resolve_backbone(c.backbone)
        model_config = hub.backbone_config(c.backbone, resolved)
        _check_causal_lm(c.backbone, model_config)
        tokenizer = hub.load_tokenizer(c.backbone, resolved)
        limit = c.max_length or context_length(SimpleNamespace(config=model_config), tokenizer)
    if c.backend == "transformers":
        from comp.models.hf import device as devices

        device = devices.select_device(c.device)
        devices.select_precision(c.precision, device)
        devices.check_quantization(c.quantization, device)
    _check_prompt_fits(c, task, tokenizer, limit)


def _check_causal_lm(backbone: str, model_config) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    if type(model_config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise ConfigError(
            f"backbone '{backbone}' ({model_config.model_type}) is not a causal (decoder) language "
            "model; the LLM families need one, e.g. an instruction-tuned Llama, Qwen2, Gemma or Mistral"
        )


def _check_prompt_fits(c, task: TaskInfo, tokenizer, limit: int) -> None:
    """Build the prompt with ``few_shot`` placeholder examples and encode one row, as a fold will."""
    from comp.llm.encoding import encode
    from comp.models import labelling

    yes_no = _yes_no(c, task) if hasattr(c, "scheme") else False
    names = labelling.answer_names(task)
    shots = [("an example text " * 8, names[i % len(names)]) for i in range(getattr(c, "few_shot", 0))]
    prompt = labelling.build_prompt(c, tokenizer, task, yes_no=yes_no, examples=shots)
    scheme = labelling.build_scheme(c, task, yes_no=yes_no, **_list_keys(c))
    encode(tokenizer, prompt, ["a text"], scheme.candidates(prompt), limit)


def _list_keys(c) -> dict:
    return {"none": c.none_word, "separator": c.separator} if hasattr(c, "none_word") else {}


def _gguf_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: its tokenizer cannot be read: {first}") from None


class Model:
    """Prompts ``config.backbone`` for one fold. Fitted attributes: ``examples_`` (the fold's few-shot
    ``(text, answer)`` pairs), ``example_rows_`` (their positions in train.csv), ``test_examples_``
    and ``test_example_rows_`` (the test prompt's, drawn from all of train)."""

    def __init__(self, config: Config, task: TaskInfo, context: FoldContext):
        self.config = config
        self.task = task
        self.context = context
        self.backend_ = None
        self.examples_: list[tuple[str, str]] = []
        self.test_examples_: list[tuple[str, str]] = []
        self.example_rows_ = self.test_example_rows_ = np.zeros(0, dtype=np.int64)

    # -- the engine
    def _setup(self) -> None:
        """The backend, loaded once per process for every fold (and `comp predict`): the weights do not
        change between folds, only the prompt's examples do."""
        if self.backend_ is not None:
            return
        key = repr(
            (
                self.config.backbone,
                self.config.backend,
                self.config.device,
                self.config.precision,
                self.config.quantization,
                self.config.max_length,
                self.config.score_batch_size,
                self.config.method,
                self.config.reuse_prefix,
                self.config.n_gpu_layers,
            )
        )
        if key in _LOADED:
            self.backend_, self.identity_ = _LOADED[key]
            return
        _LOADED.clear()  # one model in memory at a time
        self._load()
        _LOADED[key] = (self.backend_, self.identity_)

    def _load(self) -> None:
        from comp.llm import backends
        from comp.models import labelling
        from comp.models.hf import device as devices
        from comp.models.hf import hub

        c = self.config
        gguf = is_gguf(c.backbone)
        if c.backend == "llama-cpp":
            self.backend_ = backends.LlamaCppBackend(
                Path(c.backbone).expanduser(), n_ctx=c.max_length or 4096, n_gpu_layers=c.n_gpu_layers
            )
            self.identity_ = labelling.model_identity("llama-cpp", _file_id(c.backbone), c.max_length)
            return
        if c.backend == "vllm":
            self.backend_ = backends.VLLMBackend(hub.resolve_backbone(c.backbone), max_length=c.max_length or 4096)
            self.identity_ = labelling.model_identity("vllm", c.backbone, c.max_length)
            return
        device = devices.select_device(c.device)
        precision = devices.select_precision(c.precision, device)
        devices.check_quantization(c.quantization, device)
        if gguf:
            model, tokenizer = backends.load_gguf(Path(c.backbone).expanduser(), dtype=devices.torch_dtype(precision))
            model.to(device)
            source = _file_id(c.backbone)
        else:
            resolved = hub.resolve_backbone(c.backbone)
            tokenizer = hub.load_tokenizer(c.backbone, resolved)
            weights = devices.weight_kwargs(precision, device, frozen_base=True, quantization=c.quantization)
            model = labelling.load_causal_lm(c.backbone, resolved, weights, device)
            source = hub.fingerprint(resolved)
        model.eval()
        self.backend_ = backends.TransformersBackend(
            model,
            tokenizer,
            max_length=c.max_length,
            batch_size=c.score_batch_size,
            method=c.method,
            reuse_prefix=c.reuse_prefix,
        )
        self.identity_ = labelling.model_identity(
            "transformers",
            source,
            precision,
            c.quantization,
            device.type,
            c.method,
            c.reuse_prefix,
            c.score_batch_size,
            self.backend_.max_length,
        )

    # -- "training": the few-shot examples
    def fit(self, texts: Sequence[str], Y: np.ndarray, valid=None) -> Model:
        """Draw the fold's and the test prompt's few-shot examples; nothing is trained. ``texts``,
        ``Y`` (n_samples, n_outputs): the fold's training rows; ``valid``: its held-out rows (never
        examples of the fold's prompt)."""
        from comp.llm.fewshot import select_examples
        from comp.llm.sft import answers
        from comp.models import labelling

        c, ctx = self.config, self.context
        Y = np.asarray(Y)
        valid_texts, valid_Y = (list(valid[0]), np.asarray(valid[1])) if valid is not None else ([], Y[:0])
        n_train, n_valid = len(texts), len(valid_texts)
        train_pos, valid_pos = ctx.positions or (np.arange(n_train), np.arange(n_train, n_train + n_valid))
        train_pos, valid_pos = np.asarray(train_pos), np.asarray(valid_pos)
        n = n_train + n_valid
        all_texts = np.empty(n, dtype=object)
        all_texts[train_pos], all_texts[valid_pos] = list(texts), valid_texts
        all_Y = np.zeros((n, Y.shape[1]))
        all_Y[train_pos], all_Y[valid_pos] = Y, valid_Y
        folds = np.full(n, -1)
        folds[valid_pos] = ctx.fold
        self.example_rows_ = self.test_example_rows_ = np.zeros(0, dtype=np.int64)
        if c.few_shot:
            eligible = np.array([len(str(t)) <= c.few_shot_max_chars for t in all_texts])
            self.example_rows_ = select_examples(
                all_Y, c.few_shot, folds=folds, fold=ctx.fold, seed=c.seed, eligible=eligible
            )
            # the test prompt: all of train in file order, so every fold draws the same examples
            self.test_example_rows_ = select_examples(all_Y, c.few_shot, seed=c.seed, eligible=eligible)
        names = labelling.answer_names(self.task)

        def pairs(rows):
            if not len(rows):
                return []
            said = answers(all_Y[rows], names, task=self.task.task, shuffle=False)
            return [(str(all_texts[i]), a) for i, a in zip(rows, said, strict=True)]

        self.examples_, self.test_examples_ = pairs(self.example_rows_), pairs(self.test_example_rows_)
        if c.few_shot:
            ctx.log(
                f"fold {ctx.fold}: {len(self.examples_)} few-shot examples from the other folds' rows; the test "
                f"prompt's {len(self.test_examples_)} from all of train"
            )
        return self

    # -- scoring
    def _proba(self, texts: Sequence[str], examples, what: str) -> np.ndarray:
        from comp.models import labelling

        self._setup()
        c, task = self.config, self.task
        yes_no = _yes_no(c, task)
        prompt = labelling.build_prompt(c, self.backend_.tokenizer, task, yes_no=yes_no, examples=examples)
        scheme = labelling.build_scheme(c, task, yes_no=yes_no)
        candidates = scheme.candidates(prompt)
        cache = self.context.cache_dir if c.cache_scores and self.context.is_main_process else None
        logprobs = labelling.scores_of(
            self.backend_,
            prompt,
            [str(t) for t in texts],
            candidates,
            cache_dir=cache,
            identity=self.identity_,
            log=self.context.log,
            what=what,
        )
        return labelling.to_outputs(scheme.proba(logprobs), task)

    def predict_oof(self, texts: Sequence[str]) -> np.ndarray:
        """The fold's held-out rows under the fold's prompt, shape (n_samples, n_outputs); with
        ``score_rows`` only a seeded fraction of them, the other rows NaN."""
        from comp.models.labelling import partial_rows

        c = self.config
        rows = partial_rows(len(texts), c.score_rows, c.seed, self.context.fold)
        out = np.full((len(texts), self.task.n_outputs), np.nan)
        if len(rows) < len(texts):
            self.context.log(
                f"fold {self.context.fold}: score_rows {c.score_rows:g}: scoring {len(rows)} of "
                f"{len(texts)} held-out rows (a partial OOF, not blendable)"
            )
        out[rows] = self._proba([texts[i] for i in rows], self.examples_, f"fold {self.context.fold} held-out")
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """New rows (test) under the test prompt (examples from all of train): (n_samples, n_outputs)."""
        return self._proba(texts, self.test_examples_, f"fold {self.context.fold} test")

    # -- persistence: the prompt's examples (there are no weights)
    saves_adapter = False

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "backbone": self.config.backbone,
            "task": self.task.task,
            "classes": list(self.task.classes),
            "examples": [list(e) for e in self.examples_],
            "test_examples": [list(e) for e in self.test_examples_],
            # positions in train.csv, to check what each prompt was shown
            "example_rows": [int(i) for i in self.example_rows_],
            "test_example_rows": [int(i) for i in self.test_example_rows_],
        }
        write_text(directory / SAVED, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, config: Config, task: TaskInfo, context: FoldContext) -> Model:
        path = Path(directory) / SAVED
        if not path.is_file():
            raise RunError(f"{directory} holds no saved prompt ({SAVED}); retrain with save_models: true")
        meta = json.loads(path.read_text(encoding="utf-8"))
        if list(meta["classes"]) != list(task.classes):
            raise RunError(f"{directory} was made for classes {meta['classes']}, not {list(task.classes)}")
        model = cls(config, task, context)
        model.examples_ = [tuple(e) for e in meta["examples"]]
        model.test_examples_ = [tuple(e) for e in meta["test_examples"]]
        return model


def _file_id(path: str) -> tuple:
    stat = Path(path).expanduser().stat()
    return (str(Path(path).expanduser().resolve()), stat.st_size, stat.st_mtime_ns)
