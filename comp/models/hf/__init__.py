"""The Hugging Face machinery behind ``model: transformer`` (and the families that build on it).

    hub.py         resolve a backbone offline, the one proxy-aware probe of the hub, load tokenizers and models
    device.py      device, precision, 4/8-bit quantisation and the ``from_pretrained`` weight arguments
    cache.py       per-text caches of arrays (token ids, sentence vectors) shared by folds and runs
    tokens.py      tokenising once, truncation (head, or head + tail), prompt templates, length-sorted rows
    heads.py       pooled classification heads (cls, mean, last token, last-4 concat, attention; multi-sample dropout)
    layers.py      where a backbone keeps its transformer layers (layer-wise lr, freezing, re-initialising)
    peft_methods.py  any peft method by name, its keys checked against peft's own config class
    bottleneck.py  Houlsby / Pfeiffer bottleneck adapters as a peft tuner registered with peft
    strategies.py  FullFineTune / Adapter: how the weights load, what trains, what is saved and loaded
    classifier.py  the fold's sequence classifier: built, saved and loaded through a strategy
    checks.py      static config checks, the preflight of this machine, the validation score
    losses.py      class weights, (focal) BCE / cross-entropy on hard or soft targets, per-row weights
    trainer.py     the Trainer subclass: comp's loss, layer-wise lr groups, trick hooks, sorted inference
    callbacks.py   early stopping with min_epochs, the evaluation log, the progress bar, extra checkpoints
    arguments.py   a config -> TrainingArguments (evaluation, best model, precision, distributed)
    tricks/        one module per training trick (AWP, FGM, EMA / SWA, freezing, re-initialising)

Modules import torch / transformers / peft inside functions, except trainer.py, callbacks.py, heads.py
and bottleneck.py, whose classes subclass the Trainer's, torch's and peft's: import those only where
training starts.
"""
