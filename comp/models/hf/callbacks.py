"""Trainer callbacks: early stopping with ``min_epochs``, the evaluation log, a progress bar,
resumable checkpoints between evaluations, AdaLoRA's rank allocation, and the tricks' events."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

from transformers import EarlyStoppingCallback, TrainerCallback


class MinEpochsEarlyStopping(EarlyStoppingCallback):
    """The Trainer's early stopping, which cannot fire before ``min_epochs`` epochs."""

    def __init__(
        self, early_stopping_patience: int = 1, early_stopping_threshold: float = 0.0, min_epochs: float = 0.0
    ):
        super().__init__(early_stopping_patience, early_stopping_threshold)
        self.min_epochs = min_epochs

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        stopping = control.should_training_stop
        super().on_evaluate(args, state, control, metrics, **kwargs)
        if not stopping and (state.epoch or 0) + 1e-6 < self.min_epochs:
            control.should_training_stop = False

    def state(self) -> dict:
        saved = super().state()
        saved["args"]["min_epochs"] = self.min_epochs
        return saved


def history(log_history: list[dict], greater_is_better: bool) -> list[dict]:
    """One dict per evaluation (epoch, step, score, the last training loss, whether it was a new best)
    from the Trainer's ``state.log_history``, which a resumed fit carries over from its checkpoint."""
    out, loss, best = [], None, None
    for entry in log_history:
        if "loss" in entry:
            loss = float(entry["loss"])
        if "eval_score" in entry:
            value = float(entry["eval_score"])
            improved = best is None or (value > best if greater_is_better else value < best)
            best = value if improved else best
            out.append(
                {
                    "epoch": round(float(entry.get("epoch") or 0), 4),
                    "step": int(entry["step"]),
                    "score": value,
                    "loss": loss,
                    "best": improved,
                }
            )
    return out


class EvalLog(TrainerCallback):
    """One log line per evaluation (loss, validation metric, whether it is the best so far)."""

    def __init__(self, log: Callable[[str], None], fold: int, metric: str, greater_is_better: bool):
        self.log, self.fold, self.metric = log, fold, metric
        self.greater_is_better = greater_is_better
        self.last_loss: float | None = None
        self.history: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get("eval_score")
        if value is None:
            return
        # called before the Trainer updates best_metric: "best" means strictly better than every earlier one
        best = state.best_metric is None or (
            value > state.best_metric if self.greater_is_better else value < state.best_metric
        )
        self.history.append(
            {
                "epoch": round(float(state.epoch or 0), 4),
                "step": state.global_step,
                "score": value,
                "loss": self.last_loss,
                "best": bool(best),
            }
        )
        self.log(
            f"fold {self.fold} epoch {state.epoch:.2f} step {state.global_step}: loss {_fmt(self.last_loss)}, "
            f"valid {self.metric} {value:.4f} (tuned thresholds)" + (" best" if best else "")
        )

    def on_train_end(self, args, state, control, **kwargs):
        if control.should_training_stop and state.global_step < state.max_steps:
            self.log(f"fold {self.fold}: early stop at epoch {state.epoch:.2f}; best at step {state.best_global_step}")


class ProgressBar(TrainerCallback):
    """One step bar per fold with ETA, epoch, loss and the last validation score (terminals only)."""

    def __init__(self, fold: int, evals: EvalLog):
        self.fold, self.evals, self.bar = fold, evals, None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                leave=False,
                dynamic_ncols=True,
                desc=f"fold {self.fold}",
                unit="step",
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
            self.bar.set_description(
                f"fold {self.fold} epoch {math.ceil(state.epoch or 0)}/{math.ceil(args.num_train_epochs)}"
            )
            score = self.evals.history[-1]["score"] if self.evals.history else None
            self.bar.set_postfix_str(f"loss {_fmt(self.evals.last_loss)} valid {_fmt(score)}", refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CheckpointEvery(TrainerCallback):
    """A resumable checkpoint every ``steps`` optimizer steps, besides the ones at evaluations."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.steps == 0:
            control.should_save = True


class ReportEpochs(TrainerCallback):
    """Hands each evaluation's validation score to ``report(epoch, score)`` (a tuner's pruner, see
    FoldContext.on_epoch); an exception it raises (optuna.TrialPruned) stops training, and the fold
    stays unfinished."""

    def __init__(self, report):
        self.report = report

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get("eval_score")
        if value is not None and state.is_world_process_zero:
            self.report(float(state.epoch or 0), float(value))


class AdaLoraAllocation(TrainerCallback):
    """AdaLoRA re-allocates its ranks from the gradients after each optimizer step, before they are
    cleared: peft leaves that call to the training loop."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        base = getattr(model, "base_model", None)
        if base is not None and hasattr(base, "update_and_allocate"):
            base.update_and_allocate(state.global_step)


class TrickEvents(TrainerCallback):
    """Forwards the Trainer's events to the tricks that define a method of that name."""

    EVENTS = ("on_train_begin", "on_epoch_end", "on_optimizer_step", "on_step_end", "on_save", "on_train_end")

    def __init__(self, tricks: list):
        self.tricks = tricks

    def _forward(self, event: str, args, state, control, **kwargs):
        for trick in self.tricks:
            hook = getattr(trick, event, None)
            if hook is not None:
                hook(args, state, control, **kwargs)

    def on_train_begin(self, args, state, control, **kwargs):
        self._forward("on_train_begin", args, state, control, **kwargs)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._forward("on_epoch_end", args, state, control, **kwargs)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self._forward("on_optimizer_step", args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        self._forward("on_step_end", args, state, control, **kwargs)

    def on_save(self, args, state, control, **kwargs):
        self._forward("on_save", args, state, control, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        self._forward("on_train_end", args, state, control, **kwargs)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
