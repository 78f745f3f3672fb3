"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020) as a peft tuner.

An adapter follows a sublayer's output projection: ``h + up(f(down(h)))``, a down-projection to
``hidden / reduction_factor`` units, a non-linearity, an up-projection and a residual connection,
before the sublayer's dropout, skip connection and layer norm. ``variant: pfeiffer`` adapts the
feed-forward output of every layer, ``houlsby`` also the attention output. The up-projection starts
at zero (``init_weights: true``), so training starts from the pretrained model exactly.

The ``adapters`` library implements these but pins transformers 4.x; as a peft tuner they are
registered with peft (``register``), so ``get_peft_model``, ``save_pretrained`` (an
``adapter_config.json`` with ``peft_type: BOTTLENECK``) and ``PeftModel.from_pretrained`` treat
them like LoRA, on any base layer, 4-bit ones included: the adapter wraps the layer's output.

    peft: {method: bottleneck, variant: pfeiffer, reduction_factor: 16, non_linearity: relu}
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils.peft_types import PeftType, register_peft_method

NAME = "bottleneck"
ACTIVATIONS = {
    "relu": torch.nn.ReLU,
    "gelu": torch.nn.GELU,
    "tanh": torch.nn.Tanh,
    "swish": torch.nn.SiLU,
    "silu": torch.nn.SiLU,
}
_BERT_FFN, _BERT_ATTN = r".*\.layer\.\d+\.output\.dense", r".*\.layer\.\d+\.(attention\.output|output)\.dense"
_LLAMA_FFN, _LLAMA_ATTN = r".*\.layers\.\d+\.mlp\.down_proj", r".*\.layers\.\d+\.(mlp\.down_proj|self_attn\.o_proj)"
_DISTIL_FFN, _DISTIL_ATTN = r".*\.layer\.\d+\.ffn\.lin2", r".*\.layer\.\d+\.(ffn\.lin2|attention\.out_lin)"
# model_type -> (pfeiffer targets, houlsby targets): regular expressions over full module names
TARGETS = {
    **{
        t: (_BERT_FFN, _BERT_ATTN)
        for t in (
            "bert",
            "roberta",
            "xlm-roberta",
            "deberta",
            "deberta-v2",
            "electra",
            "camembert",
            "modernbert",
            "ernie",
        )
    },
    **{
        t: (_LLAMA_FFN, _LLAMA_ATTN)
        for t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3")
    },
    "distilbert": (_DISTIL_FFN, _DISTIL_ATTN),
}


@dataclass
class BottleneckConfig(PeftConfig):
    """Settings of a bottleneck adapter (see the module docstring)."""

    variant: str = field(default="pfeiffer", metadata={"help": "pfeiffer (FFN output) or houlsby (+ attention)"})
    reduction_factor: float = field(default=16.0, metadata={"help": "hidden size / bottleneck size"})
    non_linearity: str = field(default="relu", metadata={"help": "relu, gelu, tanh, swish"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the adapter's bottleneck"})
    target_modules: str | list[str] | None = field(
        default=None, metadata={"help": "modules whose output is adapted; null: by variant and architecture"}
    )
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "trained and saved in full"})
    init_weights: bool = field(default=True, metadata={"help": "zero up-projection: start as the identity"})

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = PeftType.BOTTLENECK
        if self.variant not in ("pfeiffer", "houlsby"):
            raise ValueError(f"variant must be pfeiffer or houlsby, got {self.variant!r}")
        if self.non_linearity not in ACTIVATIONS:
            raise ValueError(f"non_linearity must be one of {', '.join(ACTIVATIONS)}, got {self.non_linearity!r}")
        if not self.reduction_factor > 0:
            raise ValueError(f"reduction_factor must be positive, got {self.reduction_factor}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class BottleneckLayer(BaseTunerLayer):
    """Holds one down/up pair per adapter name around ``base_layer``'s output."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")
    other_param_names = ("bottleneck_act",)

    def __init__(self, base_layer: torch.nn.Module):
        self.base_layer = base_layer
        self.bottleneck_down = torch.nn.ModuleDict({})
        self.bottleneck_up = torch.nn.ModuleDict({})
        self.bottleneck_act = torch.nn.ModuleDict({})
        self._disable_adapters = False
        self.merged_adapters = []
        base = self.get_base_layer()
        self.out_features = getattr(base, "out_features", None) or base.weight.shape[0]

    def update_layer(self, adapter_name: str, config: BottleneckConfig) -> None:
        width = self.out_features
        inner = max(1, round(width / config.reduction_factor))
        down, up = torch.nn.Linear(width, inner), torch.nn.Linear(inner, width)
        if config.init_weights:
            torch.nn.init.normal_(down.weight, std=0.01)
            torch.nn.init.zeros_(down.bias)
            torch.nn.init.zeros_(up.weight)
            torch.nn.init.zeros_(up.bias)
        self.bottleneck_down[adapter_name] = down
        self.bottleneck_up[adapter_name] = up
        act = ACTIVATIONS[config.non_linearity]()
        self.bottleneck_act[adapter_name] = torch.nn.Sequential(act, torch.nn.Dropout(config.dropout))
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)


class Bottleneck(torch.nn.Module, BottleneckLayer):
    """``base_layer`` followed by the active adapters: ``y = base(x); y + up(act(down(y)))``."""

    def __init__(self, base_layer: torch.nn.Module, adapter_name: str, config: BottleneckConfig):
        super().__init__()
        BottleneckLayer.__init__(self, base_layer)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, config)

    def merge(self, safe_merge: bool = False, adapter_names=None) -> None:
        raise ValueError("bottleneck adapters are non-linear and cannot be merged into the base weights")

    def unmerge(self) -> None:
        pass

    def forward(self, x, *args, **kwargs):
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        for name in self.active_adapters:
            if name not in self.bottleneck_down:
                continue
            down = self.bottleneck_down[name]
            h = result.to(down.weight.dtype)
            result = result + self.bottleneck_up[name](self.bottleneck_act[name](down(h))).to(result.dtype)
        return result


class BottleneckModel(BaseTuner):
    """Wraps the target modules of a model with :class:`Bottleneck` layers."""

    prefix = "bottleneck_"
    tuner_layer_cls = BottleneckLayer
    target_module_mapping = {t: pair[0] for t, pair in TARGETS.items()}

    def _prepare_adapter_config(self, peft_config: BottleneckConfig, model_config: dict) -> BottleneckConfig:
        if peft_config.target_modules is None:
            pair = TARGETS.get(model_config.get("model_type"))
            if pair is None:
                raise ValueError(
                    f"no default bottleneck targets for model type {model_config.get('model_type')!r}; "
                    "set target_modules to the sublayer output projections"
                )
            peft_config.target_modules = pair[peft_config.variant == "houlsby"]
        return peft_config

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key) -> None:
        if isinstance(target, BottleneckLayer):
            target.update_layer(adapter_name, peft_config)
            return
        new_module = Bottleneck(target, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)


def _add_peft_type() -> None:
    """Add BOTTLENECK to peft's PeftType enum. ``register_peft_method`` accepts only names of that enum,
    which lists peft's own methods; Python enums have no public way to grow, so the member is added
    the way ``EnumType`` adds one when the class is created."""
    if "BOTTLENECK" in PeftType.__members__:
        return
    member = str.__new__(PeftType, "BOTTLENECK")
    member._name_, member._value_ = "BOTTLENECK", "BOTTLENECK"
    member.__objclass__ = PeftType
    PeftType._member_map_["BOTTLENECK"] = member
    PeftType._value2member_map_["BOTTLENECK"] = member
    PeftType._member_names_.append("BOTTLENECK")
    type.__setattr__(PeftType, "BOTTLENECK", member)
    assert isinstance(PeftType.BOTTLENECK, enum.Enum)


def register() -> None:
    """Make ``method: bottleneck`` known to peft (once per process)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    _add_peft_type()
    if PeftType.BOTTLENECK not in PEFT_TYPE_TO_CONFIG_MAPPING:
        register_peft_method(name=NAME, config_cls=BottleneckConfig, model_cls=BottleneckModel)
