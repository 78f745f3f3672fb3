"""Where a backbone keeps its embeddings and transformer layers, by the names transformers uses.

BERT-likes keep their layers in ``encoder.layer``, Llama-likes in ``model.layers``, GPT-2 in ``h``,
T5 in ``block``: the layer stack is the longest ``ModuleList`` under one of those names.
"""

from __future__ import annotations

import re

_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
_STACK_NAMES = ("layer", "layers", "h", "block", "blocks")


def layer_stack(model):
    """``(name, ModuleList)`` of the transformer layers of ``model``, or ``(None, None)``."""
    import torch

    best = (None, None)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.rsplit(".", 1)[-1] in _STACK_NAMES:
            if best[1] is None or len(module) > len(best[1]):
                best = (name, module)
    return best


def n_layers(model) -> int:
    config = getattr(model, "config", None)
    value = getattr(config, "num_hidden_layers", None) if config is not None else None
    return int(value) if value else len(layer_stack(model)[1] or ())


def layer_depth(name: str, n: int) -> int:
    """0 for embeddings, i + 1 for transformer layer i, n + 1 for the head and the rest."""
    found = _LAYER.search(name)
    if found:
        return min(int(found.group(1)) + 1, n)
    if "embed" in name:
        return 0
    return n + 1


def embedding_parameters(model) -> list:
    """The parameters of the input embedding block (word, position, token-type embeddings and their norm)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    params = {id(p): p for p in embeddings.parameters()} if embeddings is not None else {}
    for name, param in model.named_parameters():
        if "embeddings." in name or name.endswith("embed_tokens.weight"):
            params.setdefault(id(param), param)
    return list(params.values())
