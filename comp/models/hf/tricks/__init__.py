"""Training tricks, one module each, switched on by a config key (null / 0: off, today's behaviour).

A trick is a settings value (the config key's type) and a class built from it that defines any of:

- ``prepare(model, log)``: change the model before the optimizer exists (freezing, re-initialising);
- ``after_backward(trainer, model, inputs)``: after each micro-batch's backward, e.g. one more
  forward/backward with perturbed weights (``trainer.extra_backward(model, inputs)``): AWP, FGM;
- ``eval_weights(model)``: a context manager holding the weights that evaluations and checkpoints
  see (so also the best model and the saved one): EMA, SWA;
- Trainer events by name (``on_train_begin``, ``on_epoch_end``, ``on_optimizer_step``,
  ``on_step_end``, ``on_save``, ``on_train_end``), forwarded by ``callbacks.TrickEvents``;
- ``resume_from``: an attribute set to the checkpoint the fit resumes from (or None).

Adding a trick: a module here, one entry in ``TRICKS`` and its key in ``comp.models.transformer.Config``.
Pooling and multi-sample dropout are heads (``heads.py``); head + tail truncation is ``tokens.py``.
"""

from __future__ import annotations

import importlib

# config key -> (module, class): built in this order (freezing before re-initialising, so a layer
# can be both re-initialised and trained)
TRICKS = {
    "freeze": ("freeze", "Freeze"),
    "reinit_layers": ("reinit", "Reinit"),
    "awp": ("awp", "AWP"),
    "fgm": ("fgm", "FGM"),
    "ema": ("average", "EMA"),
    "swa": ("average", "SWA"),
}


def build(config) -> list:
    """The tricks a transformer-family config switches on."""
    tricks = []
    for key, (module, name) in TRICKS.items():
        settings = getattr(config, key, None)
        if settings:
            cls = getattr(importlib.import_module(f"{__name__}.{module}"), name)
            tricks.append(cls(settings))
    return tricks
