"""Decoder LLMs as classifiers inside ``model: transformer``: LoRA / IA3 adapters, 4- and 8-bit bases.

A config turns the family's fine-tuning into parameter-efficient training with three keys::

    peft: {method: lora, r: 16, alpha: 32, dropout: 0.05, target_modules: all-linear}   # or method: ia3
    quantization: 4bit            # none | 8bit | 4bit (nf4, double quantisation, compute in the run's precision)
    prompt_template: "Tweet: {text}\\nEmotions:"

The backbone loads through ``AutoModelForSequenceClassification``; Llama, Gemma, Qwen2, Mistral and
the like classify from the hidden state of the last token that is not padding, so batches are
padded on the right with a pad token the model knows (``config.pad_token_id``). peft's
``task_type=SEQ_CLS`` trains and saves the new head (``score`` / ``classifier``) with the adapter;
a fold saves only the adapter and head, and loading puts them back on the base model.

The training loop, outputs, resume and ``--fold`` sharding are the transformer family's: this module
only builds, wraps, snapshots, saves and loads. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from comp.errors import ConfigError

TEXT_FIELD = "{text}"
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class PeftSettings:
    """The ``peft:`` section of a transformer config."""

    method: Literal["lora", "ia3"] = "lora"
    r: int = 16  # LoRA rank
    alpha: float = 32.0  # LoRA scaling numerator: updates are scaled by alpha / r
    dropout: float = 0.05  # LoRA dropout on the adapter's input
    target_modules: str | list[str] | None = None  # null: all-linear (lora), peft's per-architecture list (ia3)
    feedforward_modules: list[str] | None = None  # ia3 only: modules scaled on their input; null: peft's list
    init: bool | str = True  # peft's init_lora_weights (true, false, gaussian, pissa, ...) / init_ia3_weights

    def check(self, where: str) -> None:
        if self.r < 1:
            raise ConfigError(f"{where}: peft r must be a positive rank, got {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"{where}: peft alpha must be positive, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}: peft dropout must be in [0, 1), got {self.dropout}")
        if self.method == "ia3" and not isinstance(self.init, bool):
            raise ConfigError(f"{where}: peft init for ia3 is true or false, got {self.init!r}")
        if self.method != "ia3" and self.feedforward_modules is not None:
            raise ConfigError(f"{where}: peft feedforward_modules is an ia3 setting; remove it for {self.method}")


def check_config(config, where: str) -> None:
    """Checks of the decoder keys of a transformer ``config``; resolves ``gradient_checkpointing: null``
    (on with peft, where activations outweigh the trainable weights; off for full fine-tuning)."""
    template = config.prompt_template
    if template is not None and template.count(TEXT_FIELD) != 1:
        raise ConfigError(
            f"{where}: prompt_template must contain {TEXT_FIELD} exactly once, got {template!r}; "
            'e.g. prompt_template: "Tweet: {text}\\nEmotions:"'
        )
    if config.quantization != "none" and config.peft is None:
        raise ConfigError(
            f"{where}: quantization: {config.quantization} freezes the backbone's weights, so it needs an "
            "adapter to train; add peft: {method: lora} or set quantization: none"
        )
    if config.gradient_checkpointing is None:
        config.gradient_checkpointing = config.peft is not None


# ---- quantisation ------------------------------------------------------------------------------
def check_quantization(quantization: str, device) -> None:
    """Raise a one-line ConfigError, before any weights are read, when bitsandbytes cannot quantise
    on ``device`` (not installed, or no quantised kernels for that device in this build)."""
    if quantization == "none":
        return
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # ImportError, or a broken CUDA setup raising while it loads
        raise ConfigError(
            f"quantization: {quantization} needs bitsandbytes, which cannot be imported here "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'}); "
            "pip install bitsandbytes, or set quantization: none"
        ) from None
    kind = getattr(device, "type", str(device))
    supported = set(getattr(bnb, "supported_torch_devices", ()) or ("cuda",))
    if kind not in supported:
        raise ConfigError(
            f"quantization: {quantization} needs bitsandbytes' quantised layers on {kind}, which this "
            f"bitsandbytes {getattr(bnb, '__version__', '')} does not have (it supports: "
            f"{', '.join(sorted(supported)) or 'nothing'}); set quantization: none, or run on a CUDA GPU"
        )


def quantization_config(quantization: str, precision: str):
    """BitsAndBytesConfig: 4bit = nf4 with double quantisation computing in the run's precision."""
    from transformers import BitsAndBytesConfig

    from comp.backbones import torch_dtype

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(precision),
    )


def load_kwargs(config, precision: str, device) -> dict:
    """Extra ``from_pretrained`` arguments for an adapter: the base's weights in the run's precision
    (bf16 on a GPU: the frozen base needs no fp32 copy; fp32 on CPU, also from a bf16 checkpoint,
    which transformers would otherwise load as bf16), and the quantisation config and device map
    for a quantised base. Full fine-tuning keeps fp32 master weights (autocast does the bf16 maths);
    transformers 5 would otherwise train a bf16 checkpoint in bf16."""
    from comp.backbones import torch_dtype

    if config.peft is None:
        return {"dtype": torch_dtype("fp32")}
    kwargs = {"dtype": torch_dtype(precision)}
    if config.quantization != "none":
        kwargs["quantization_config"] = quantization_config(config.quantization, precision)
        # quantised weights are placed while loading; each process of a multi-GPU launch on its own GPU
        where = int(os.environ.get("LOCAL_RANK", device.index or 0)) if device.type == "cuda" else device.type
        kwargs["device_map"] = {"": where}
    return kwargs


# ---- tokens and prompts ------------------------------------------------------------------------
def prepare_tokenizer(tokenizer, backbone: str):
    """Pad on the right with the tokenizer's pad token, else its EOS.

    Right padding keeps the real tokens at positions 0..n-1, as without padding; last-token
    pooling then finds the last non-pad token, so padded and unpadded rows give the same logits.
    """
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ConfigError(
                f"backbone '{backbone}': its tokenizer has neither a pad nor an EOS token to pad batches "
                "with; use a backbone whose tokenizer defines one"
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def align_pad_token(model, tokenizer) -> None:
    """Make the model pool with the id the batches are padded with (decoders find the last
    non-pad token by comparing with ``config.pad_token_id``)."""
    pad = tokenizer.pad_token_id
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        if getattr(config, "pad_token_id", None) != pad:
            config.pad_token_id = pad


def apply_template(template: str | None, texts) -> list[str]:
    if template is None:
        return [str(t) for t in texts]
    head, tail = template.split(TEXT_FIELD)
    return [head + str(t) + tail for t in texts]


def keep_template_tail(tokens, template: str | None) -> None:
    """Truncation keeps the template's closing words (``\\nEmotions:``): the decoder classifies
    from the last token, so a long text loses its middle, not the prompt's end.

    ``tokens`` is a :class:`comp.backbones.TokenIds`; its kept tail grows by the token count of
    the text after ``{text}`` (tokenised alone: a merge across the boundary may shift it by one).
    """
    if not template:
        return
    tail = template.split(TEXT_FIELD)[1]
    if tail:
        tokens.n_suffix += len(tokens.tokenizer(tail, add_special_tokens=False)["input_ids"])


# ---- the adapter ---------------------------------------------------------------------------------
def peft_config(settings: PeftSettings):
    """A peft LoraConfig / IA3Config with ``task_type=SEQ_CLS`` (the head is trained and saved)."""
    from peft import IA3Config, LoraConfig, TaskType

    if settings.method == "ia3":
        return IA3Config(
            task_type=TaskType.SEQ_CLS,
            target_modules=settings.target_modules,
            feedforward_modules=settings.feedforward_modules,
            init_ia3_weights=settings.init,
        )
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules or "all-linear",
        init_lora_weights=settings.init,
    )


def prepare_quantized(model):
    """peft's ``prepare_model_for_kbit_training`` without its fp32 copy of the embeddings.

    The base is frozen and its small unquantised tensors (norms, the new head) move to fp32 for
    stable training. The input embeddings are frozen and large (256k x 2304 for Gemma-2): in fp32
    they would outweigh the 4-bit layers, and the cast would briefly hold both copies, so they stay
    in the dtype they were loaded in. Gradient checkpointing is left to the Trainer (non-reentrant,
    so the inputs need no requires_grad hook).
    """
    import torch

    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    for param in model.parameters():
        param.requires_grad = False
        half = param.dtype in (torch.float16, torch.bfloat16)
        if half and id(param) not in embeddings and type(param).__name__ != "Params4bit":
            param.data = param.data.to(torch.float32)
    return model


def wrap(model, config, backbone: str):
    """``model`` with a fresh adapter; only adapter and head are trainable, and they train in fp32."""
    import torch
    from peft import get_peft_model

    if config.quantization != "none":
        model = prepare_quantized(model)
    try:
        model = get_peft_model(model, peft_config(config.peft))
    except ValueError as exc:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(
            f"peft {config.peft.method} cannot be applied to backbone '{backbone}': "
            f"{str(exc).strip().splitlines()[0]}; its linear layers are named: {', '.join(names)}"
        ) from None
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()  # AdamW updates on half-precision weights lose small steps
    model.peft_config["default"].base_model_name_or_path = backbone
    return model


def is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def trainable_state(model) -> dict:
    """Copies (on CPU) of the trainable tensors only: adapter and head, a few MB instead of the model."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


def restore_state(model, state: dict) -> None:
    """Load a :func:`trainable_state` snapshot back; every key must exist in ``model``."""
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"snapshot keys not in the model: {result.unexpected_keys[:3]}")


def is_adapter_dir(directory: Path) -> bool:
    return (Path(directory) / ADAPTER_CONFIG).is_file()


def load_adapter(base, directory: Path):
    """``base`` with the adapter and head saved in ``directory``, ready for inference."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(base, str(directory), is_trainable=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(
            f"{directory}: the adapter does not fit backbone '{adapter_base(directory)}': "
            f"{str(exc).strip().splitlines()[0]}"
        ) from None


def adapter_base(directory: Path) -> str:
    """The base model recorded in ``adapter_config.json``."""
    path = Path(directory) / ADAPTER_CONFIG
    return str(json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path") or "")
