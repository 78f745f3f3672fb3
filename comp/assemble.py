"""Assembling a finished run: every fold's arrays into oof.parquet / test.parquet, scored.

Whichever process finds every fold done assembles the run, under the run lock; the test
probabilities are the mean of the fold models'.
"""

from __future__ import annotations

import numpy as np

from comp.data import Competition
from comp.evaluation import OofScores, evaluate_oof
from comp.fold_state import fold_facts
from comp.provenance import now
from comp.record import PartialOof
from comp.run_files import read_run_yaml, write_run_outputs, write_run_yaml
from comp.runlog import RunLog
from comp.workspace import RunPaths, Workspace


def assemble(
    ws: Workspace, paths: RunPaths, comp: Competition, folds: np.ndarray, log: RunLog, n_seeds: int = 1
) -> OofScores:
    """Gather every fold's arrays (whichever process trained them) into the run's files and score the OOF.
    The caller holds the run lock."""
    settings = comp.settings
    n_folds = int(folds.max()) + 1
    oof = np.zeros((len(folds), len(settings.output_names)))
    test = np.zeros((len(comp.test_texts), len(settings.output_names)))
    for k in range(n_folds):
        oof[folds == k] = np.load(paths.fold_oof(k))
        test += np.load(paths.fold_test(k)) / n_folds
    scored = np.isfinite(oof).all(axis=1)
    # a partial OOF (the prompt family's score_rows) is scored on its scored rows only, and marked
    scores = evaluate_oof(
        oof[scored], comp.Y[scored], folds[scored], settings.task, settings.metric, settings.min_labels
    )
    partial = None if scored.all() else {"scored_rows": int(scored.sum()), "train_rows": len(scored)}
    fold_seconds = {k: v for k, v in fold_facts(paths, n_folds, "seconds").items() if isinstance(v, int | float)}
    for row in scores.per_fold:
        row["seconds"] = fold_seconds.get(row["fold"])
    total = round(sum(fold_seconds.values()), 2)
    extra = {
        "task": settings.task,
        "n_folds": n_folds,
        "seconds": total,
        **({"partial_oof": partial} if partial else {}),
    }
    record = read_run_yaml(paths)
    if record.cv_optimistic:  # a student distilled from OOF predictions (comp.second_stage)
        extra.update({"cv_optimistic": True, "cv_optimistic_reason": record.cv_optimistic_reason})
    if n_seeds > 1:
        from comp.seeds import seed_spread

        per_seed = []
        for s in range(n_seeds):
            seed_oof = np.zeros_like(oof)
            for k in range(n_folds):
                seed_oof[folds == k] = np.load(paths.seed_dir(k, s) / "oof.npy")
            per_seed.append(seed_oof)
        extra["seeds"] = seed_spread([o[scored] for o in per_seed], comp.Y[scored], folds[scored], settings, scores)
    write_run_outputs(
        paths,
        settings.id_column,
        settings.output_names,
        comp.train_ids,
        folds,
        oof,
        comp.test_ids,
        test,
        scores.scores_json(extra),
        scores.thresholds_json(settings.output_names, settings.task, settings.min_labels),
    )
    record.completed, record.seconds = now(), total
    record.partial_oof = PartialOof(**partial) if partial else None
    write_run_yaml(paths, record)
    on = f" on {partial['scored_rows']} of {partial['train_rows']} rows (partial OOF: not blendable)" if partial else ""
    log(
        f"cv {settings.metric}{on}: at 0.5 {scores.at_05:.4f}, tuned {scores.tuned:.4f}, honest {scores.honest:.4f}"
        + (f" (optimistic: {record.cv_optimistic_reason})" if record.cv_optimistic else "")
    )
    if n_seeds > 1:
        from comp.seeds import describe_spread

        log(describe_spread(extra["seeds"], settings.metric))
    return scores
