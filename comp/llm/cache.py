"""What the scorer's methods share around the model's KV cache: the candidates' token trie, the
name of the cache keyword of the model's forward, a returned cache's layers, the sliding window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from comp.errors import ConfigError


@dataclass
class Trie:
    tokens: list[int]  # one token per node
    parent: list[int]  # parent node, -1 for a child of the row's last token
    depth: list[int]  # 0 for the first token after the row
    paths: list[list[int]]  # node indices of each candidate, in order


def cache_layers(out) -> list:
    """Per-layer ``(keys, values)`` of the cache a forward pass returned."""
    cache = getattr(out, "cache", None)
    cache = out.past_key_values if cache is None else cache
    return [(layer.keys, layer.values) for layer in cache.layers]


def build_trie(sequences: Sequence[Sequence[int]]) -> Trie:
    """A token trie of ``sequences``: equal prefixes share nodes."""
    trie = Trie([], [], [], [])
    children: dict[tuple[int, int], int] = {}
    for seq in sequences:
        node, path = -1, []
        for token in seq:
            key = (node, int(token))
            if key not in children:
                children[key] = len(trie.tokens)
                trie.tokens.append(int(token))
                trie.parent.append(node)
                trie.depth.append(trie.depth[node] + 1 if node >= 0 else 0)
            node = children[key]
            path.append(node)
        trie.paths.append(path)
    return trie


def cache_keyword(model) -> str:
    """``cache`` (transformers >= 5.x's name) or ``past_key_values`` (its earlier name), read from
    the model's own forward: a keyword the model does not know would be swallowed by ``**kwargs``
    and silently run without the cache."""
    import inspect

    import transformers

    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        raise ConfigError(
            f"comp.llm's scorer needs transformers 5 or later (this is {transformers.__version__}); "
            "pip install -U 'transformers>=5'"
        )
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def sliding_window(config) -> int | None:
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if window and (types is None or any("sliding" in str(t) for t in types)):
        return int(window)
    return None
