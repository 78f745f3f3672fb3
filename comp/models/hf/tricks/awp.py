"""AWP: adversarial weight perturbation (Wu et al. 2020), as used in many Kaggle NLP solutions.

After each micro-batch's backward pass, every trainable weight whose name contains ``param`` moves
along its gradient by ``lr`` x |w| / |g| (bounded to ``eps`` x |w| per element), the loss is computed
and back-propagated once more at that point, and the weights are put back exactly: the optimizer
step then uses the clean plus the adversarial gradient, which favours flat minima.
"""

from __future__ import annotations

from dataclasses import dataclass

from comp.errors import ConfigError


@dataclass
class AWPSettings:
    lr: float = 1.0  # step size, relative to each weight's norm over its gradient's norm
    eps: float = 0.01  # bound on the perturbation of each element, relative to its magnitude
    start_epoch: float = 1.0  # perturb from this epoch on: the first epoch learns the task clean
    steps: int = 1  # perturb-and-backward rounds per micro-batch
    param: str = "weight"  # perturb trainable parameters whose name contains this

    def check(self, where: str) -> None:
        if self.lr <= 0 or self.eps <= 0:
            raise ConfigError(f"{where}: awp lr and eps must be positive, got lr {self.lr}, eps {self.eps}")
        if self.start_epoch < 0 or self.steps < 1:
            raise ConfigError(
                f"{where}: awp start_epoch must be >= 0 and steps >= 1, got {self.start_epoch}, {self.steps}"
            )


class AWP:
    def __init__(self, settings: AWPSettings):
        self.settings = settings
        self.attacks = 0  # micro-batches perturbed

    def after_backward(self, trainer, model, inputs) -> None:
        import torch

        s = self.settings
        if (trainer.state.epoch or 0) + 1e-9 < s.start_epoch:
            return
        params = [p for n, p in model.named_parameters() if p.requires_grad and p.grad is not None and s.param in n]
        if not params:
            return
        backup = [p.data.clone() for p in params]
        bounds = [s.eps * b.abs() for b in backup]
        for _ in range(s.steps):
            with torch.no_grad():
                for p, b, bound in zip(params, backup, bounds, strict=True):
                    g_norm, w_norm = torch.linalg.vector_norm(p.grad), torch.linalg.vector_norm(p.data)
                    if g_norm > 0 and torch.isfinite(g_norm):
                        p.data.add_(s.lr * p.grad / (g_norm + 1e-6) * (w_norm + 1e-6))
                        p.data.copy_(torch.minimum(torch.maximum(p.data, b - bound), b + bound))
            trainer.extra_backward(model, inputs)
        with torch.no_grad():
            for p, b in zip(params, backup, strict=True):
                p.data.copy_(b)
        self.attacks += 1
