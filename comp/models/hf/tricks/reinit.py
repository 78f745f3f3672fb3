"""Re-initialising the top N transformer layers (Zhang et al. 2021, "Revisiting few-sample BERT
fine-tuning"): the top layers specialise in the pre-training objective; fresh ones adapt faster."""

from __future__ import annotations


class Reinit:
    def __init__(self, n: int):
        self.n = int(n)

    def prepare(self, model, log) -> None:
        import torch

        from comp.errors import ConfigError
        from comp.models.hf.layers import layer_stack

        _, stack = layer_stack(model)
        if not stack or self.n > len(stack):
            raise ConfigError(f"reinit_layers {self.n}: the backbone has only {len(stack or ())} layers")
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        std = float(getattr(config, "initializer_range", 0.02) or 0.02)
        with torch.no_grad():
            for layer in list(stack)[-self.n :]:
                for module in layer.modules():
                    if isinstance(module, torch.nn.Linear):
                        module.weight.normal_(0.0, std)
                        if module.bias is not None:
                            module.bias.zero_()
                    elif hasattr(module, "reset_parameters") and list(module.parameters(recurse=False)):
                        module.reset_parameters()  # norms: torch's own initial values
        log(f"re-initialised the top {self.n} of {len(stack)} layers (normal, std {std:g})")
