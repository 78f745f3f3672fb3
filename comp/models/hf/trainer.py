"""The Trainer subclass every transformer-family fold trains and predicts with.

What it adds to the Hugging Face Trainer: comp's loss (class weights, focal, soft targets, row
weights), AdamW groups with layer-wise learning-rate decay, the tricks' hooks (an extra backward
pass after each micro-batch's own: AWP, FGM; other weights for evaluation and checkpoints: EMA,
SWA), and an in-order evaluation sampler so that predictions on length-sorted rows can be put back
in input order. Best-model selection, early stopping, checkpoints, resume, mixed precision and
several GPUs are the Trainer's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from comp.models.hf.layers import layer_depth, n_layers
from comp.models.hf.tokens import sorted_order


def param_groups(model, lr: float, weight_decay: float, layer_decay: float, no_decay: set[str]) -> list[dict]:
    """AdamW groups: lr * layer_decay ** (distance from the head); no decay on biases and norms."""
    n = n_layers(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layer_depth(name, n)
        decays = name in no_decay
        group = groups.setdefault(
            (depth, decays),
            {
                "params": [],
                "lr": lr * layer_decay ** (n + 1 - depth),
                "weight_decay": 0.0 if decays else weight_decay,
            },
        )
        group["params"].append(param)
    return list(groups.values())


class CompTrainer(Trainer):
    """``loss(logits, labels, sample_weight)``; ``groups(model, no_decay=...)`` -> AdamW parameter
    groups; ``tricks``: objects with any of ``after_backward(trainer, model, inputs)`` and
    ``eval_weights(model)`` (a context manager), see :mod:`comp.models.hf.tricks`."""

    def __init__(
        self, *args, loss: Callable | None = None, groups: Callable | None = None, tricks: Sequence = (), **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.comp_loss = loss
        self.comp_groups = groups
        self.tricks = list(tricks)
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False  # our loss is a per-batch mean: the Trainer divides by GA
        for callback in (PrinterCallback, ProgressCallback):
            self.remove_callback(callback)

    # ---- training
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        sample_weight = inputs.pop("sample_weight", None)
        outputs = model(**inputs)
        loss = self.comp_loss(outputs.logits, labels, sample_weight)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        for trick in self.tricks:
            if hasattr(trick, "after_backward"):
                trick.after_backward(self, model, inputs)
        return loss

    def extra_backward(self, model, inputs) -> torch.Tensor:
        """One more forward and backward pass on ``inputs``, scaled like the micro-batch's own (for
        adversarial tricks, with their perturbation applied). Returns the detached loss."""
        inputs = self._prepare_inputs(inputs)
        with self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        self.accelerator.backward(loss / self.current_gradient_accumulation_steps)
        return loss.detach()

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(model))  # the Trainer's rule: not biases, not norms
            no_decay = {n for n, _ in model.named_parameters() if n not in decay}
            # one fused kernel per step instead of a loop over tensors (as the Trainer's default optim)
            fused = self.args.device.type in ("cuda", "cpu")
            self.optimizer = torch.optim.AdamW(
                self.comp_groups(model, no_decay=no_decay), lr=self.args.learning_rate, fused=fused
            )
        return self.optimizer

    def train(self, resume_from_checkpoint=None, **kwargs):
        for trick in self.tricks:
            if hasattr(trick, "resume_from"):
                trick.resume_from = resume_from_checkpoint
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    # ---- the weights evaluations and checkpoints see
    @contextlib.contextmanager
    def trick_weights(self):
        with contextlib.ExitStack() as stack:
            for trick in self.tricks:
                if hasattr(trick, "eval_weights"):
                    stack.enter_context(trick.eval_weights(self.model))
            yield

    def evaluate(self, *args, **kwargs):
        with self.trick_weights():
            return super().evaluate(*args, **kwargs)

    def save_model(self, output_dir=None, _internal_call=False):
        with self.trick_weights() if self.is_in_train else contextlib.nullcontext():
            return super().save_model(output_dir, _internal_call)

    # ---- inference
    def _get_eval_sampler(self, eval_dataset):
        # rows are pre-sorted by length: keep that order (little padding; predictions map back by index).
        # The Trainer's own sampler groups evaluation rows by length whenever training does (transformers
        # 5.x), and predict() then returns them in that shuffled order.
        if self.args.world_size <= 1:
            return torch.utils.data.SequentialSampler(eval_dataset)
        return None

    def predict_rows(self, rows: list[dict]) -> np.ndarray:
        """Logits (n_rows, n_outputs) for dataset rows, in their order: predicted longest first in
        batches of similar length, then put back."""
        order = sorted_order([len(r["input_ids"]) for r in rows])
        logits = self.predict([rows[i] for i in order]).predictions
        out = np.empty_like(np.asarray(logits, dtype=np.float32))
        out[order] = logits
        return out
