"""Ensembles of runs trained on the same folds: mean, rank, weighted (Caruana) and stack.

An ensemble is written as a run with the same files as a trained model (plus weights.json), so
`thresholds`, `submit`, `runs` and `report` take it unchanged. Its blender and decision form one
chain (``comp.chain``); the honest CV cross-fits the whole chain (weights or meta-model, and
thresholds) without each held-out fold. run.yaml's ``config`` holds the blender's parameters, so
`comp thresholds` rebuilds the same chain.

weights.json::

    {"method": "weighted", "members": [..], "metric": "f1_macro" | null, "greater_is_better": true | null,
     "weights": {"tfidf": 0.6, ...}, "weights_are": "...", "meta_model": "logistic" (stack only)}

``metric``: the objective the weights were fitted for (weighted only; mean, rank and stack fit no
weights to a metric).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comp.atomic import write_json
from comp.blend import METHODS, blender_config, make_blender
from comp.chain import Chain
from comp.errors import RunError
from comp.evaluation import OofScores, decision_for, evaluate_chain, evaluate_oof, greater_is_better
from comp.metrics import METRICS
from comp.provenance import now, package_versions
from comp.record import RunRecord
from comp.run_files import write_run_outputs, write_run_yaml
from comp.runs import RunData, labels_for, load_run
from comp.stack import check_meta_model
from comp.workspace import Workspace

WEIGHTS_ARE = {
    "mean": "equal weights",
    "rank": "equal weights on per-class OOF quantiles",
    "weighted": "Caruana selection counts over their sum",
    "stack": "each member's share of the meta-models' absolute standardised coefficients (lightgbm: split gain)",
}


def check_compatible(runs: list[RunData]) -> None:
    """Same fold file, same train and test ids, same classes; names the culprits otherwise."""
    first = runs[0]
    for r in runs[1:]:
        if not r.record.folds.same_file(first.record.folds):
            raise RunError(
                f"runs '{first.name}' and '{r.name}' were trained on different fold files ({first.record.folds.file} "
                "vs "
                f"{r.record.folds.file}); retrain one of them with the other's --folds/--seed so their OOF rows line up"
            )
        if r.ids != first.ids or r.test_ids != first.test_ids or not np.array_equal(r.folds, first.folds):
            raise RunError(
                f"runs '{first.name}' and '{r.name}' have different train or test ids; retrain them on the same data"
            )
        if r.classes != first.classes:
            raise RunError(
                f"runs '{first.name}' and '{r.name}' have different classes; they belong to different competitions"
            )


def ensemble_config(
    method: str, metric: str, names: list[str], meta_model: str = "logistic", meta_c: float = 1.0
) -> dict:
    """run.yaml's ``config`` of an ensemble: what `make_blender` rebuilds the blender from."""
    config = {"method": method, "metric": metric, "members": list(names)}
    if method == "stack":
        config.update({"meta_model": meta_model, "C": float(meta_c)})
    return config


@dataclass
class EnsembleResult:
    name: str
    weights: dict[str, float]
    scores: OofScores
    members: dict[str, dict]  # member -> its CV in the ensemble's metric (metric, greater_is_better, at_0.5, ...)
    seconds: float = 0.0


def member_scores(run: RunData, Y: np.ndarray, task: str, metric: str, min_labels: int) -> dict:
    """A member's CV in ``metric`` (its scores.json may hold another metric): recomputed from its OOF."""
    scores = evaluate_oof(run.oof, Y, run.folds, task, metric, min_labels)
    return {
        "metric": metric,
        "greater_is_better": scores.greater_is_better,
        "at_0.5": scores.at_05,
        "tuned": scores.tuned,
        "honest": scores.honest,
    }


def best_member(members: dict[str, dict], metric: str) -> tuple[str, float]:
    """The member with the best honest CV in ``metric``; refuses scores of another metric."""
    other = [n for n, m in members.items() if m.get("metric") != metric]
    if other:
        raise RunError(
            f"member(s) {', '.join(other)} are scored with another metric than {metric}; "
            "they cannot be compared with the ensemble"
        )
    pick = max if METRICS[metric].greater_is_better else min
    name = pick(members, key=lambda n: members[n]["honest"])
    return name, members[name]["honest"]


def make_ensemble(
    ws: Workspace,
    names: list[str],
    name: str,
    method: str = "mean",
    metric: str | None = None,
    force: bool = False,
    meta_model: str = "logistic",
    meta_c: float = 1.0,
) -> EnsembleResult:
    import time

    started = time.perf_counter()
    settings = ws.load_settings()
    metric = metric or settings.metric
    if method not in METHODS:
        raise RunError(f"unknown ensemble method '{method}'; choose one of {', '.join(METHODS)}")
    if metric not in METRICS:
        raise RunError(f"unknown metric '{metric}'; choose one of {', '.join(METRICS)}")
    if method == "stack":
        check_meta_model(meta_model)
        if not meta_c > 0:
            raise RunError(f"--meta-c must be positive (the inverse L2 strength), got {meta_c}")
    if len(set(names)) < 2:
        raise RunError("an ensemble needs at least two different runs; `comp runs` lists them")
    if name in names:
        raise RunError(f"the ensemble name '{name}' is one of its members; choose another --name")
    paths = ws.run(name)
    if paths.exists and not force:
        raise RunError(f"run '{name}' already exists; pass --force to replace it or choose another --name")
    runs = [load_run(ws, n, settings.output_names) for n in names]
    check_compatible(runs)
    comp = labels_for(ws, runs[0])
    folds = runs[0].folds
    n_folds = np.unique(folds).size
    if method == "stack" and n_folds < 3:
        raise RunError(
            f"stacking needs at least 3 folds (the honest CV fits each fold's meta-model out of fold on the "
            f"others), the members have {n_folds}; retrain them with --folds 3 or more"
        )
    config = ensemble_config(method, metric, names, meta_model, meta_c)
    task = settings.task
    chain = Chain(
        make_blender(config, task, settings.min_labels),
        decision=decision_for(metric, task, settings.min_labels),
        task=task,
    )
    members_oof = np.stack([r.oof for r in runs])
    scores = evaluate_chain(chain, members_oof, comp.Y, folds, metric)
    test = chain.predict_proba(np.stack([r.test for r in runs]))
    members = {r.name: member_scores(r, comp.Y, task, metric, settings.min_labels) for r in runs}
    weight_map = {r.name: float(w) for r, w in zip(runs, chain.blender_.weights_, strict=True)}
    config.update(blender_config(chain.blender))
    # the members' data fingerprint, which load_run checked is current
    record = RunRecord(
        name=name,
        kind="ensemble",
        model=f"ensemble({method})",
        config=config,
        members=list(names),
        folds=runs[0].record.folds,
        competition=runs[0].record.competition,
        data=runs[0].record.data,
        versions=package_versions(),
        created=now(),
        completed=now(),
    )
    optimistic = {r.name: r.record.optimistic_reason for r in runs if r.record.cv_optimistic}
    flag = {}
    if optimistic:  # a member's OOF carries its validation folds' labels: so does the blend's
        record.cv_optimistic = True
        record.cv_optimistic_reason = "; ".join(
            f"member '{n}' has an optimistic CV ({why})" for n, why in optimistic.items()
        )
        flag = {"cv_optimistic": True, "cv_optimistic_reason": record.cv_optimistic_reason}
    seconds = round(time.perf_counter() - started, 2)
    write_run_outputs(
        paths,
        settings.id_column,
        settings.output_names,
        runs[0].ids,
        folds,
        chain.oof_,
        runs[0].test_ids,
        test,
        scores.scores_json({"task": task, "n_folds": n_folds, "seconds": seconds, "members": members, **flag}),
        scores.thresholds_json(settings.output_names, task, settings.min_labels),
    )
    objective = metric if method == "weighted" else None
    weights = {
        "method": method,
        "members": names,
        "metric": objective,
        "greater_is_better": greater_is_better(objective),
        "weights": weight_map,
        "weights_are": WEIGHTS_ARE[method],
    }
    if method == "stack":
        weights.update({"meta_model": meta_model, "C": float(meta_c)})
    write_json(paths.weights, weights)
    record.seconds = seconds
    write_run_yaml(paths, record)
    return EnsembleResult(name, weight_map, scores, members, seconds)
