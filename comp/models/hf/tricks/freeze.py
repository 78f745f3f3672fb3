"""Layer freezing: the embeddings and/or the bottom N transformer layers do not train.

Lower layers hold general features that a small competition set can only damage; freezing them
also saves their optimizer state and backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from comp.errors import ConfigError


@dataclass
class FreezeSettings:
    embeddings: bool = False
    layers: int = 0  # the bottom N transformer layers

    def check(self, where: str) -> None:
        if self.layers < 0:
            raise ConfigError(f"{where}: freeze layers must be >= 0, got {self.layers}")

    def __bool__(self) -> bool:
        return bool(self.embeddings or self.layers)


class Freeze:
    def __init__(self, settings: FreezeSettings):
        self.settings = settings

    def prepare(self, model, log) -> None:
        from comp.models.hf.layers import embedding_parameters, layer_stack

        s = self.settings
        _, stack = layer_stack(model)
        if s.layers > len(stack or ()):
            raise ConfigError(f"freeze layers {s.layers}: the backbone has only {len(stack or ())} layers")
        frozen = list(embedding_parameters(model)) if s.embeddings else []
        for layer in list(stack or ())[: s.layers]:
            frozen += list(layer.parameters())
        for param in frozen:
            param.requires_grad = False
        left = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        what = " and ".join(
            x for x in ("the embeddings" * s.embeddings, f"the bottom {s.layers} layers" * bool(s.layers)) if x
        )
        log(f"froze {what}: {left:,} of {total:,} parameters train")
