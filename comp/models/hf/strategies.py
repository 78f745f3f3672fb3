"""One strategy per training mode: how the weights load, what trains, what is saved and loaded.

- :class:`FullFineTune`: every weight trains (fp32 master weights); a fold saves the whole model.
- :class:`Adapter`: the base is frozen (optionally 4/8-bit), a peft adapter of any method trains
  with the head; a fold saves only the adapter and head (``adapter_config.json`` names the base).

:func:`choose` picks one from a config once; nothing else asks whether a model is a peft model.
The strategies know nothing of classification: ``task_type`` and ``modules_to_save`` come from the
caller (``SEQ_CLS`` for the classifier, ``CAUSAL_LM`` for a generative model).
"""

from __future__ import annotations

import json
from pathlib import Path

from comp.errors import ConfigError
from comp.models.hf import device as devices
from comp.models.hf import peft_methods

ADAPTER_CONFIG = "adapter_config.json"


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


class FullFineTune:
    """Every weight trains; the fold's model is saved in full with ``save_pretrained``."""

    name = "full"
    saves_adapter = False
    frozen_base = False
    default_gradient_checkpointing = False  # activations are small next to weights + optimizer state

    def weight_kwargs(self, precision: str, device) -> dict:
        return devices.weight_kwargs(precision, device, frozen_base=False)

    def prepare(self, model, *, base_path: str, task_type: str | None, modules_to_save=None, run=None):
        return model

    def callbacks(self) -> list:
        return []

    def save(self, model, directory: Path, backbone: str) -> None:
        model.save_pretrained(directory)

    def load(self, base, directory: Path):
        return base  # the base was loaded from ``directory`` itself


class Adapter:
    """A frozen (optionally quantised) base with a peft adapter: ``settings`` is the ``peft:`` mapping."""

    saves_adapter = True
    frozen_base = True
    default_gradient_checkpointing = True  # activations outweigh the few trainable weights

    def __init__(self, settings: dict, quantization: str = "none", sharded: bool = False):
        self.settings = dict(settings)
        self.method = str(self.settings.get("method", "lora")).lower()
        self.name = self.method
        self.quantization = quantization
        self.sharded = sharded

    def weight_kwargs(self, precision: str, device) -> dict:
        return devices.weight_kwargs(
            precision, device, frozen_base=True, quantization=self.quantization, sharded=self.sharded
        )

    def prepare(self, model, *, base_path: str, task_type: str | None, modules_to_save=None, run=None):
        """``model`` with a fresh adapter: only adapter and ``modules_to_save`` train, in fp32."""
        import torch
        from peft import get_peft_model

        if self.method == "prefix_tuning":
            peft_methods.check_prefix_tuning(model.config, base_path)
        if self.quantization != "none":
            model = freeze_quantized(model)
        settings = dict(self.settings)
        if task_type is None and settings.get("target_modules", "all-linear") == "all-linear":
            # peft excludes a PreTrainedModel's own head from all-linear; for a custom module name the layers
            settings["target_modules"] = _linear_leaf_names(model, exclude=modules_to_save or ())
        config = peft_methods.peft_config(settings, task_type, modules_to_save=modules_to_save, run=run)
        try:
            model = get_peft_model(model, config)
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            names = ", ".join(_linear_leaf_names(model))
            raise ConfigError(
                f"peft {self.method} cannot be applied to this backbone: {str(exc).strip().splitlines()[0]}; "
                f"its linear layers are named: {names}"
            ) from None
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()  # AdamW updates on half-precision weights lose small steps
        model.peft_config["default"].base_model_name_or_path = base_path  # a local folder: no hub lookups
        return model

    def callbacks(self) -> list:
        if self.method == "adalora":
            from comp.models.hf.callbacks import AdaLoraAllocation

            return [AdaLoraAllocation()]
        return []

    def save(self, model, directory: Path, backbone: str) -> None:
        config = model.peft_config["default"]
        local = config.base_model_name_or_path
        config.base_model_name_or_path = backbone  # the name the user gave: portable between machines
        try:
            model.save_pretrained(directory, save_embedding_layers=False)
        finally:
            config.base_model_name_or_path = local

    def load(self, base, directory: Path):
        """``base`` with the adapter and head saved in ``directory``, ready for inference."""
        from peft import PeftModel

        peft_methods.register_comp_methods()
        try:
            return PeftModel.from_pretrained(base, str(directory), is_trainable=False)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ConfigError(
                f"{directory}: the adapter does not fit backbone '{adapter_base(directory)}': "
                f"{str(exc).strip().splitlines()[0]}"
            ) from None


def choose(config):
    """The strategy of a transformer-family ``config`` (its ``peft``, ``quantization``, ``distributed``)."""
    if config.peft is None:
        return FullFineTune()
    return Adapter(config.peft, config.quantization, sharded=getattr(config, "distributed", "") == "fsdp")


def is_adapter_dir(directory: Path) -> bool:
    return (Path(directory) / ADAPTER_CONFIG).is_file()


def adapter_base(directory: Path) -> str:
    """The base model recorded in ``adapter_config.json``."""
    path = Path(directory) / ADAPTER_CONFIG
    return str(json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path") or "")


def freeze_quantized(model):
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


def _linear_leaf_names(model, exclude=()) -> list[str]:
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(name == e or name.startswith(f"{e}.") for e in exclude):
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)
