"""Training one task of a run (a fold, or one seed of it) and averaging a fold's seeds.

The task's arrays are written first and its done.json last, so a killed task leaves no done marker
and is trained again by the next `comp train`.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable

import numpy as np

from comp.atomic import write_json, write_npy
from comp.errors import RunError
from comp.locks import run_lock
from comp.models.base import FoldContext
from comp.provenance import now
from comp.run_identity import check_still_ours
from comp.run_plan import RunPlan, Unit


def train_fold(plan: RunPlan, unit: Unit, on_epoch: Callable[[int, float, float], None] | None = None) -> float:
    """Fit one task (fold, seed) on the other folds' rows and save its validation and test probabilities."""
    from comp.seeds import task_seed

    config, task, comp, log, k = plan.config, plan.task, plan.comp, plan.log, unit.fold
    started = time.perf_counter()
    train_rows, valid_rows = np.flatnonzero(plan.folds != k), np.flatnonzero(plan.folds == k)
    texts = comp.train_texts
    out = plan.unit_dir(unit)
    log(f"{unit.label}: training on {len(train_rows)} rows, validating on {len(valid_rows)}")
    context = FoldContext(
        fold=k,
        seed=task_seed(plan.seed, k, unit.seed),
        cache_dir=plan.ws.cache_dir,
        fold_dir=out,
        log=log,
        warn=log.warn,
        is_main_process=plan.main,
        positions=(train_rows, valid_rows),
        on_epoch=None if on_epoch is None else (lambda epoch, value: on_epoch(k, epoch, value)),
    )
    model = plan.family.Model(config, task, context)
    valid_texts = [texts[i] for i in valid_rows]
    if plan.stage is None:
        fit_texts, fit_Y, extra_fit, stage_facts = [texts[i] for i in train_rows], comp.Y[train_rows], {}, {}
    else:  # a student: soft targets and pseudo-labelled rows from its teachers' fold-k models
        plan.stage.check_unchanged(plan.paths.name)
        rows = plan.stage.fold_rows(k, train_rows, texts, comp.Y, log, log.warn)
        fit_texts, fit_Y, stage_facts = rows.texts, rows.Y, rows.facts
        extra_fit = {} if rows.sample_weight is None else {"sample_weight": rows.sample_weight}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(fit_texts, fit_Y, valid=(valid_texts, comp.Y[valid_rows]), **extra_fit)
        predict_oof = getattr(model, "predict_oof", model.predict_proba)  # may leave rows unscored (NaN)
        oof = np.asarray(predict_oof(valid_texts), dtype=np.float64)
        test = np.asarray(model.predict_proba(comp.test_texts), dtype=np.float64)
    # library warnings (e.g. a solver that did not converge) belong in train.log, once per message
    for message in dict.fromkeys(
        f"{unit.label}: {w.category.__name__}: {str(w.message).splitlines()[0]}"
        for w in caught
        if not issubclass(w.category, DeprecationWarning | FutureWarning)
    ):
        log.warn(message)
    expected = (len(valid_rows), task.n_outputs)
    if oof.shape != expected or test.shape != (len(comp.test_texts), task.n_outputs):
        raise RunError(f"model '{config.model}' returned probabilities of shape {oof.shape}, expected {expected}")
    scored = np.isfinite(oof).all(axis=1)
    if hasattr(model, "predict_oof") and scored.any() and not np.isfinite(oof[~scored]).any():
        checked = (("validation", oof[scored]), ("test", test))  # a partial OOF: unscored rows are NaN throughout
    else:
        checked, scored = (("validation", oof), ("test", test)), np.ones(len(oof), dtype=bool)
    for name, values in checked:
        if not np.isfinite(values).all() or values.min() < -1e-6 or values.max() > 1 + 1e-6:
            raise RunError(
                f"{unit.label}: model '{config.model}' returned {name} probabilities that are NaN or "
                "outside [0, 1]; nothing was saved for this fold (check the config, e.g. a learning rate "
                "too high)"
            )
    seconds = time.perf_counter() - started
    if plan.main:
        if config.save_models:
            # adapter families (LoRA, IA3) keep only adapter + head, with the base model's id
            adapter = getattr(model, "saves_adapter", False)
            model.save(out / ("adapter" if adapter else "model"))
        write_npy(out / "oof.npy", oof)
        write_npy(out / "test.npy", test)
        facts = {
            "fold": k,
            **({"seed": unit.seed, "seed_value": context.seed} if unit.n_seeds > 1 else {}),
            "seconds": round(seconds, 2),
            "train_rows": len(train_rows),
            "valid_rows": len(valid_rows),
            **stage_facts,
            "finished": now(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "digest": plan.digest,
            **({} if scored.all() else {"scored_rows": int(scored.sum())}),
        }
        # the marker is written last: its presence means the task's arrays are complete
        write_json(out / "done.json", facts)
    log(f"{unit.label}: done in {seconds:.1f}s")
    return seconds


def complete_fold(plan: RunPlan, k: int) -> bool:
    """With several seeds: once every seed of fold ``k`` is done, write the fold's mean arrays and its
    done.json (under the run lock, by whichever process finds the last seed done). True when the fold
    is done."""
    from comp.seeds import mean_of

    if plan.fold_state(k) == "done":
        return True
    units = plan.units([k])
    if any(plan.unit_state(u) != "done" for u in units):
        return False
    paths = plan.paths
    with run_lock(paths.dir):
        check_still_ours(paths, plan.digest)
        if plan.fold_state(k) == "done":
            return True
        dirs = [plan.unit_dir(u) for u in units]
        facts = [json.loads((d / "done.json").read_text(encoding="utf-8")) for d in dirs]
        write_npy(paths.fold_oof(k), mean_of([np.load(d / "oof.npy") for d in dirs]))
        write_npy(paths.fold_test(k), mean_of([np.load(d / "test.npy") for d in dirs]))
        write_json(
            paths.fold_done(k),
            {
                "fold": k,
                "seeds": len(units),
                "seconds": round(sum(f["seconds"] for f in facts), 2),
                "train_rows": facts[0]["train_rows"],
                "valid_rows": facts[0]["valid_rows"],
                "finished": now(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "digest": plan.digest,
                **({"scored_rows": facts[0]["scored_rows"]} if "scored_rows" in facts[0] else {}),
            },
        )
    plan.log(f"fold {k}: {len(units)} seeds averaged")
    return True
