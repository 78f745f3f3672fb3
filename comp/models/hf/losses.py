"""The training loss: BCE-with-logits (multilabel, binary) or cross-entropy (multiclass).

Targets are probabilities of shape (batch, n_outputs): 0/1 indicators or one-hot rows for labelled
data, and any values in [0, 1] (rows summing to one for multiclass) for soft targets such as a
teacher's predictions. ``sample_weight`` (batch,) weighs rows, e.g. pseudo-labelled ones. With
hard targets and no row weights the values equal torch's weighted BCE / cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, softmax


def class_weight_values(Y: np.ndarray, task: str, mode: str, cap: float) -> np.ndarray | None:
    """Per-class loss weights from the fold's training rows Y (n_samples, n_outputs).

    Multilabel / binary: BCE ``pos_weight`` = negatives / positives (``balanced``) or its square
    root (``sqrt``). Multiclass: cross-entropy weights n / (k * count). Capped at ``cap``; a class
    without positives gets the cap. ``none`` -> None.
    """
    if mode == "none":
        return None
    Y = np.asarray(Y, dtype=np.float64)
    pos = Y.sum(0)
    if task == "multiclass":
        numerator = np.full_like(pos, len(Y) / Y.shape[1])
    else:
        numerator = len(Y) - pos
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(pos > 0, numerator / np.where(pos > 0, pos, 1), np.inf)
    if mode == "sqrt":
        w = np.sqrt(w)
    return np.minimum(w, cap)


def loss_value(logits, targets, task: str, weights=None, gamma: float = 0.0, sample_weight=None):
    """Mean loss of a batch. ``logits``, ``targets``: (batch, n_outputs); ``weights``: (n_outputs,)
    class weights (BCE pos_weight / cross-entropy class weights) or None; ``gamma``: focal exponent."""
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    targets = targets.to(logits.dtype)
    rows = torch.ones(len(logits), device=logits.device) if sample_weight is None else sample_weight.to(logits)
    if task == "multiclass":
        log_p = F.log_softmax(logits, dim=-1)
        per_class = -targets * log_p
        if gamma:
            per_class = (1 - log_p.exp()).clamp(min=0) ** gamma * per_class
        w = torch.ones(logits.shape[-1], device=logits.device) if weights is None else weights.to(logits)
        loss = (per_class * w).sum(-1)
        norm = (targets * w).sum(-1)  # torch's weighted mean divides by the weights of the true classes
        return (rows * loss).sum() / (rows * norm).sum().clamp(min=1e-12)
    pos_weight = None if weights is None else weights.to(logits)
    loss = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
    if gamma:
        p = logits.sigmoid()
        p_true = p * targets + (1 - p) * (1 - targets)
        loss = (1 - p_true) ** gamma * loss
    return (rows * loss.mean(-1)).sum() / rows.sum().clamp(min=1e-12)


@dataclass
class Loss:
    """The loss a fold trains with: ``loss(logits, targets, sample_weight=None)``."""

    task: str
    weights: object = None  # torch tensor (n_outputs,) or None
    gamma: float = 0.0

    def __call__(self, logits, targets, sample_weight=None):
        return loss_value(logits, targets, self.task, self.weights, self.gamma, sample_weight)


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Logits (n_samples, n_outputs) -> float64 probabilities: scipy's ``softmax`` over each row
    (multiclass) or its ``expit`` (the logistic sigmoid) per value."""

    logits = np.asarray(logits, dtype=np.float64)
    return softmax(logits, axis=1) if task == "multiclass" else expit(logits)
