"""Device, precision and quantisation, and the ``from_pretrained`` arguments that follow from them.

Every check here raises a one-line ConfigError before any weights are read, naming the setting and
what to use instead.
"""

from __future__ import annotations

import os

from comp.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
QUANTIZATIONS = ("none", "8bit", "4bit")


def select_device(device: str = "auto"):
    """``auto`` -> CUDA when present, else CPU. Asking for CUDA without one is a ConfigError."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {device} but this machine has no CUDA GPU; use device: auto or cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ConfigError(f"device '{device}' is not a torch device; use auto, cpu or cuda") from None


def select_precision(precision: str, device) -> str:
    """``auto`` -> bf16 on CUDA that has it, fp16 on older CUDA, fp32 elsewhere.

    bf16 on a GPU without it, or fp16 off CUDA, is a ConfigError naming what to use instead.
    """
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    cuda = getattr(device, "type", str(device)) == "cuda"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return ("bf16" if bf16_ok else "fp16") if cuda else "fp32"
    if precision == "bf16" and cuda and not bf16_ok:
        name = torch.cuda.get_device_name(device)
        raise ConfigError(f"precision: bf16 but {name} does not support bf16; use precision: fp16 or auto")
    if precision == "fp16" and not cuda:
        raise ConfigError("precision: fp16 needs a CUDA GPU; use precision: fp32 (or bf16) on CPU")
    return precision


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def check_quantization(quantization: str, device) -> None:
    """Raise a one-line ConfigError when bitsandbytes cannot quantise on ``device`` (not installed,
    or no quantised kernels for that device in this build)."""
    if quantization == "none":
        return
    try:
        import bitsandbytes as bnb
    except Exception as exc:  # ImportError, or a broken CUDA setup raising while it loads
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise ConfigError(
            f"quantization: {quantization} needs bitsandbytes, which cannot be imported here "
            f"({type(exc).__name__}: {detail}); pip install bitsandbytes, or set quantization: none"
        ) from None
    kind = getattr(device, "type", str(device))
    supported = set(getattr(bnb, "supported_torch_devices", ()) or ("cuda",))
    if kind not in supported:
        raise ConfigError(
            f"quantization: {quantization} needs bitsandbytes' quantised layers on {kind}, which this "
            f"bitsandbytes {getattr(bnb, '__version__', '')} does not have (it supports: "
            f"{', '.join(sorted(supported)) or 'nothing'}); set quantization: none, or run on a CUDA GPU"
        )


def keep_4bit_weights_exact(model):
    """``model`` with bitsandbytes' CPU repacking of 4-bit weights turned off; returns it.

    On a CPU with AVX512-BF16, bitsandbytes repacks a ``Linear4bit``'s weights in place at its first
    inference forward, rounding the block scales (absmax) to bf16, and undoes that lossily whenever
    a state dict is taken (``save_pretrained``). The same run then predicts differently on CPUs with
    and without that instruction set, before and after saving (up to 1e-4 in probability on a tiny
    Llama), and a reloaded fold model disagrees with the one that wrote the fold's predictions. The
    generic dequantise-and-matmul path is exact and the same on every CPU; CUDA is unaffected.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def quantization_config(quantization: str, precision: str, sharded: bool = False):
    """BitsAndBytesConfig: 4bit = NF4 with double quantisation computing in the run's precision.

    ``sharded`` (FSDP-QLoRA): the 4-bit weights are stored in the compute dtype, so FSDP can shard
    them like every other tensor of that dtype.
    """
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    extra = {"bnb_4bit_quant_storage": torch_dtype(precision)} if sharded else {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(precision),
        **extra,
    )


def weight_kwargs(
    precision: str, device, *, frozen_base: bool, quantization: str = "none", sharded: bool = False
) -> dict:
    """``from_pretrained`` arguments for the base weights.

    A trained base keeps fp32 master weights (autocast does the bf16 maths; transformers 5 would
    otherwise train a bf16 checkpoint in bf16). A frozen base (adapters) is held in the run's precision:
    bf16 on a GPU needs no fp32 copy, fp32 on CPU also from a bf16 checkpoint. A quantised base is
    placed while loading: each process of a multi-GPU launch on its own GPU, or left to FSDP to shard.
    """
    if not frozen_base:
        return {"dtype": torch_dtype("fp32")}
    kwargs = {"dtype": torch_dtype(precision)}
    if quantization != "none":
        kwargs["quantization_config"] = quantization_config(quantization, precision, sharded)
        if not sharded:
            where = int(os.environ.get("LOCAL_RANK", device.index or 0)) if device.type == "cuda" else device.type
            kwargs["device_map"] = {"": where}
    return kwargs
