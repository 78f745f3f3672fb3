"""Weight averages: EMA (an exponential moving average of the weights after every optimizer step)
and SWA (the uniform average of the weights at the end of each epoch from ``start_epoch`` on).

The average is what evaluations see, so it is also what the best checkpoint holds, what the fold
predicts with and what it saves; training continues on the raw weights. Only trainable weights are
averaged (an adapter and its head, not a frozen base). A resumable checkpoint stores the average
as the model's weights and the raw weights next to it, so a resumed fit continues both.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from comp.errors import ConfigError

RAW_FILE = "comp_raw_weights.safetensors"


@dataclass
class EMASettings:
    decay: float = 0.999  # per optimizer step; warmed up as min(decay, (1 + n) / (10 + n)) after n steps

    def check(self, where: str) -> None:
        if not 0 < self.decay < 1:
            raise ConfigError(f"{where}: ema decay must be in (0, 1), got {self.decay}")


@dataclass
class SWASettings:
    start_epoch: float = 1.0  # average the weights at the end of each epoch from this one on

    def check(self, where: str) -> None:
        if self.start_epoch < 0:
            raise ConfigError(f"{where}: swa start_epoch must be >= 0, got {self.start_epoch}")


class WeightAverage:
    """Keeps ``average`` (name -> fp32 tensor) of the trainable weights; subclasses decide when to add."""

    def __init__(self, settings):
        self.settings = settings
        self.average: dict | None = None
        self.count = 0
        self.resume_from: str | None = None

    @staticmethod
    def _trainable(model) -> dict:
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def add(self, model, weight: float) -> None:
        """average = (1 - weight) * average + weight * current weights."""
        import torch

        with torch.no_grad():
            params = self._trainable(model)
            if self.average is None:
                self.average = {n: p.detach().float().clone() for n, p in params.items()}
            else:
                for n, p in params.items():
                    self.average[n].lerp_(p.detach().float(), weight)
        self.count += 1

    @contextlib.contextmanager
    def eval_weights(self, model):
        """The model holds the average inside the block, its raw weights again after it."""
        import torch

        if self.average is None:
            yield
            return
        params = self._trainable(model)
        raw = {n: params[n].detach().clone() for n in self.average}
        with torch.no_grad():
            for n, value in self.average.items():
                params[n].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, value in raw.items():
                    params[n].copy_(value)

    # ---- Trainer events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch
        from safetensors.torch import load_file

        path = Path(self.resume_from or "") / RAW_FILE
        if not self.resume_from or not path.is_file():
            return
        meta = json.loads((path.parent / (RAW_FILE + ".json")).read_text(encoding="utf-8"))
        raw, params = load_file(str(path)), self._trainable(model)
        self.count = int(meta["count"])
        with torch.no_grad():
            if self.count:  # the checkpoint's model weights are the average
                self.average = {n: params[n].detach().float().clone() for n in raw}
            for n, value in raw.items():
                params[n].copy_(value)

    def on_save(self, args, state, control, model=None, **kwargs):
        from safetensors.torch import save_file

        from comp.atomic import atomic_path, write_text

        if args.save_only_model or not state.is_world_process_zero:
            return  # best-model snapshots are not resumed from
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        raw = {n: p.detach().cpu().contiguous() for n, p in self._trainable(model).items()}
        with atomic_path(folder / RAW_FILE) as tmp:
            save_file(raw, str(tmp))
        write_text(folder / (RAW_FILE + ".json"), json.dumps({"count": self.count}) + "\n")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        import torch

        if self.average is None or (args.load_best_model_at_end and state.best_model_checkpoint):
            return  # the best checkpoint, already loaded, holds an average
        params = self._trainable(model)
        with torch.no_grad():
            for n, value in self.average.items():
                params[n].copy_(value)


class EMA(WeightAverage):
    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        decay = min(self.settings.decay, (1 + self.count) / (10 + self.count))
        self.add(model, 1.0 - decay)


class SWA(WeightAverage):
    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if (state.epoch or 0) + 1e-6 >= self.settings.start_epoch:
            self.add(model, 1.0 / (self.count + 1))
