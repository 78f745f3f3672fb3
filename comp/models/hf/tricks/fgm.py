"""FGM: the fast gradient method on the word embeddings (Miyato et al. 2017).

After each micro-batch's backward pass, the embedding rows of the batch's tokens move by
``epsilon`` along their normalised gradient, the loss is back-propagated once more, and the rows
are put back exactly. Needs trainable embeddings (full fine-tuning without ``freeze.embeddings``).
"""

from __future__ import annotations

from dataclasses import dataclass

from comp.errors import ConfigError


@dataclass
class FGMSettings:
    epsilon: float = 1.0  # L2 size of the perturbation of the embedding matrix's gradient direction
    start_epoch: float = 0.0  # perturb from this epoch on

    def check(self, where: str) -> None:
        if self.epsilon <= 0 or self.start_epoch < 0:
            raise ConfigError(
                f"{where}: fgm epsilon must be positive and start_epoch >= 0, got {self.epsilon}, {self.start_epoch}"
            )


class FGM:
    def __init__(self, settings: FGMSettings):
        self.settings = settings
        self.attacks = 0

    def after_backward(self, trainer, model, inputs) -> None:
        import torch

        s = self.settings
        if (trainer.state.epoch or 0) + 1e-9 < s.start_epoch:
            return
        weight = trainer.accelerator.unwrap_model(model).get_input_embeddings().weight
        if weight.grad is None:
            return
        norm = torch.linalg.vector_norm(weight.grad)
        if not (norm > 0 and torch.isfinite(norm)):
            return
        rows = torch.nonzero(weight.grad.abs().sum(-1)).squeeze(-1)  # only the batch's tokens have gradients
        backup = weight.data[rows].clone()
        with torch.no_grad():
            weight.data[rows] += s.epsilon * weight.grad[rows] / norm
        trainer.extra_backward(model, inputs)
        with torch.no_grad():
            weight.data[rows] = backup
        self.attacks += 1
