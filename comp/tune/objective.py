"""What a trial is judged by: the honest CV of the folds it trained, reported to the pruner fold by
fold (and, for families that evaluate per epoch, epoch by epoch).

After the i-th fold of the subset, the trial reports the honest CV of the folds done so far (step
i). One fold alone has no other folds to fit thresholds on, so its honest value is cross-fitted
between the two halves of its rows (even and odd rows). The trial's value is the honest CV of every
fold of the subset. Epochs report the family's own validation score, at steps of their own
(``EPOCH_STEPS``), so they are compared only with other trials' epochs.
"""

from __future__ import annotations

import numpy as np

EPOCH_STEPS = 1_000_000  # epoch e of the subset's fold i reports at step EPOCH_STEPS + 10_000 * i + 100 * e


def subset_score(P: np.ndarray, Y: np.ndarray, folds: np.ndarray, settings):
    """Scores (at 0.5, tuned, honest) of OOF rows ``P`` ``(n_rows, n_outputs)`` from the folds in
    ``folds`` ``(n_rows,)``: the one place where `comp tune` calls the CV scoring."""
    from comp.evaluation import evaluate_oof

    ids = np.unique(folds)
    if len(ids) == 1:
        groups = np.arange(len(folds)) % 2
    else:
        groups = np.searchsorted(ids, folds)
    return evaluate_oof(P, Y, groups, settings.task, settings.metric, settings.min_labels)


def folds_oof(plan, folds: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The OOF rows of ``folds`` of a run: (P, Y, fold of each row), from the folds' arrays."""
    rows = np.isin(plan.folds, folds)
    P = np.zeros((int(rows.sum()), plan.task.n_outputs))
    which = plan.folds[rows]
    for k in folds:
        P[which == k] = np.load(plan.paths.fold_oof(k))
    return P, plan.comp.Y[rows], which


class TrialReporter:
    """The train loop's hooks for one Optuna trial: report each finished fold (and epoch), prune."""

    def __init__(self, trial, subset: list[int]):
        self.trial = trial
        self.subset = list(subset)
        self.done: list[int] = []
        self.scores = None  # the honest CV of the folds done so far (comp.evaluation.OofScores)

    def on_fold(self, plan, k: int) -> None:
        import optuna

        if k in self.done:
            return
        self.done.append(k)
        self.scores = subset_score(*folds_oof(plan, self.done), plan.comp.settings)
        self.trial.report(float(self.scores.honest), step=len(self.done) - 1)
        if len(self.done) < len(self.subset) and self.trial.should_prune():
            plan.log(
                f"trial {self.trial.number}: pruned after {len(self.done)} fold(s) "
                f"(honest {plan.comp.settings.metric} {self.scores.honest:.4f})"
            )
            raise optuna.TrialPruned()

    def on_epoch(self, k: int, epoch: float, value: float) -> None:
        import optuna

        position = self.subset.index(k) if k in self.subset else len(self.done)
        self.trial.report(float(value), step=EPOCH_STEPS + 10_000 * position + int(round(epoch * 100)))
        if self.trial.should_prune():
            raise optuna.TrialPruned()
