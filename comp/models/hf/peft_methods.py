"""Any peft method by name: ``peft: {method: NAME, ...its own keys}``.

The keys are those of the method's peft config class (``LoraConfig``, ``LoHaConfig``, ``OFTConfig``,
``PromptTuningConfig``, ...), checked against its dataclass fields, so a misspelt key is an error
that lists the valid ones, and the values are checked by constructing that class. A few short
names are kept for LoRA and IA3 (``alpha``, ``dropout``, ``init``). comp's own methods (the
bottleneck adapters of :mod:`comp.models.hf.bottleneck`) are registered with peft first, so they
are listed, built, saved and loaded like peft's.

Adding a peft method that peft does not ship: write a tuner (config, layer, model classes), register
it in :func:`register_comp_methods`; nothing else changes.
"""

from __future__ import annotations

import dataclasses
import re

from comp.errors import ConfigError

# comp's short keys -> peft's field names, per method
ALIASES = {
    "lora": {"alpha": "lora_alpha", "dropout": "lora_dropout", "init": "init_lora_weights"},
    "adalora": {"alpha": "lora_alpha", "dropout": "lora_dropout", "init": "init_lora_weights"},
    "ia3": {"init": "init_ia3_weights"},
}
# what comp sets itself (task type, base model) or what makes no sense in a config
RESERVED = {
    "peft_type",
    "task_type",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "auto_mapping",
    "peft_version",
}
# comp's defaults where peft has none (LoRA r=16 on every linear layer)
DEFAULTS = {"lora": {"r": 16, "lora_alpha": 32.0, "lora_dropout": 0.05, "target_modules": "all-linear"}}
# set from the training run (AdaLoRA's rank schedule spans the run's optimizer steps)
FROM_RUN = {"adalora": ("total_step",)}


def register_comp_methods() -> None:
    """Register comp's own tuners with peft (idempotent)."""
    from comp.models.hf import bottleneck

    bottleneck.register()


def _classes() -> dict:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    register_comp_methods()
    return {str(getattr(k, "value", k)).lower(): v for k, v in PEFT_TYPE_TO_CONFIG_MAPPING.items()}


def available_methods() -> list[str]:
    return sorted(_classes())


def config_class(method: str, where: str = "peft"):
    classes = _classes()
    cls = classes.get(str(method).lower())
    if cls is None:
        raise ConfigError(
            f"{where}: method '{method}' is not a peft method this peft has; methods: {', '.join(sorted(classes))}"
        )
    return cls


def is_prompt_learning(method: str) -> bool:
    from peft import PromptLearningConfig

    return issubclass(config_class(method), PromptLearningConfig)


def valid_keys(method: str) -> list[str]:
    cls = config_class(method)
    names = {f.name for f in dataclasses.fields(cls) if f.init} - RESERVED - set(FROM_RUN.get(method, ()))
    return sorted(names | set(ALIASES.get(method, {})) | {"method"})


def peft_keys(settings: dict, where: str = "peft") -> tuple[str, dict]:
    """``(method, keyword arguments)`` for the method's config class, with comp's defaults; unknown keys
    are a ConfigError listing the valid ones."""
    settings = dict(settings or {})
    method = str(settings.pop("method", "lora")).lower()
    cls = config_class(method, where)
    aliases = ALIASES.get(method, {})
    fields = {f.name for f in dataclasses.fields(cls) if f.init} - RESERVED - set(FROM_RUN.get(method, ()))
    unknown = sorted(k for k in settings if aliases.get(k, k) not in fields)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} for peft method {method}; "
            f"valid keys are: {', '.join(valid_keys(method))}"
        )
    defaults = DEFAULTS.get(method, {})
    kwargs = dict(defaults)
    # null means "comp's default" for the keys comp has one for (target_modules: null -> all-linear)
    kwargs.update(
        {aliases.get(k, k): v for k, v in settings.items() if not (v is None and aliases.get(k, k) in defaults)}
    )
    return method, kwargs


def peft_config(
    settings: dict,
    task_type: str | None,
    *,
    modules_to_save: list[str] | None = None,
    run: dict | None = None,
    where: str = "peft",
):
    """The peft config object for ``settings`` (the ``peft:`` mapping of a config).

    ``task_type``: ``SEQ_CLS`` (an ``AutoModelForSequenceClassification``: its head trains and is
    saved with the adapter), ``CAUSAL_LM``, or None for a custom module, whose trained head is named
    in ``modules_to_save``. ``run``: values that come from the run (AdaLoRA's ``total_step``).
    """
    method, kwargs = peft_keys(settings, where)
    cls = config_class(method, where)
    for key in FROM_RUN.get(method, ()):
        kwargs[key] = (run or {}).get(key, 1)
    if modules_to_save and "modules_to_save" in {f.name for f in dataclasses.fields(cls)}:
        kwargs["modules_to_save"] = sorted(set(kwargs.get("modules_to_save") or []) | set(modules_to_save))
    try:
        return cls(task_type=task_type, **kwargs)
    except (ValueError, TypeError, KeyError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where}: peft {method} rejects these settings: {text}") from None


_POSITIVE = re.compile(r"^(r|\w+_r|alpha|lora_alpha|num_virtual_tokens|\w+_block_size|reduction_factor)$")


def check_settings(settings: dict, where: str = "peft") -> None:
    """Build the config once with stand-in run values: every key and value peft would reject fails here,
    and ranks, alphas and sizes that peft only refuses once the adapter is built."""
    method, kwargs = peft_keys(settings, where)
    for key, value in kwargs.items():
        if _POSITIVE.match(key) and isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise ConfigError(f"{where}: {key} must be positive for peft method {method}, got {value}")
    peft_config(settings, "SEQ_CLS", run={"total_step": 1000}, where=where)


def check_prefix_tuning(model_config, backbone: str) -> None:
    """Prefix tuning feeds its prefix as ``past_key_values``: peft needs the classifier, or the transformer
    inside it, to take them (the classes are inspected: no model is built)."""
    import inspect

    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
        MODEL_MAPPING,
    )

    classes = [
        mapping[type(model_config)]
        for mapping in (MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, MODEL_MAPPING)
        if type(model_config) in mapping
    ]
    if not any("past_key_values" in inspect.signature(cls.forward).parameters for cls in classes):
        raise ConfigError(
            f"peft prefix_tuning feeds past_key_values, which {model_config.model_type} models "
            f"('{backbone}') do not take in this transformers; use prompt_tuning or p_tuning"
        )
