"""The cross-fitting core: post-processing chains fitted on out-of-fold probabilities, and their
honest (cross-fitted) estimate.

A chain turns the members' OOF probabilities into decisions::

    members (n_members, n_samples, n_classes) -> blender -> probability steps -> decision -> labels

A trained model is a chain over one member (itself) with the mean blender; an ensemble blends
several (``comp.blend``: mean, rank, weighted; ``comp.stack``: stack). Every step is an estimator
in scikit-learn style: ``__init__`` stores parameters, ``fit(X, Y)`` returns self and sets
attributes ending in ``_``, ``transform(X)`` maps rows to rows:

- the **blender** maps members ``(n_members, n_samples, n_classes)`` to probabilities
  ``(n_samples, n_classes)``;
- a **probability step** (calibration, a prior shift, ...) maps probabilities to probabilities;
- the **decision** (``comp.thresholds.ThresholdOptimizer`` or ``DefaultDecision``) maps
  probabilities to 0/1 labels and has ``thresholds_`` and ``method_``.

A step whose output on its own fitting rows would flatter what follows (a stack's meta-model, a
calibrator) sets the class attribute ``cross_fit_output = True``. The chain then fits the next step
on that step's *cross-fitted* output: the rows of fold j come from a copy fitted on the other folds.
So the probabilities every step is fitted on, and the run's OOF (``Chain.oof_``), stay out of fold.

:func:`cross_fit` is the honest estimate of any chain: for each fold k, the whole chain is fitted
on the other folds (nested: with their fold ids, so cross-fitted steps fold again inside) and
applied to fold k. A new post-processor is one class with ``fit``/``transform`` (and
``cross_fit_output`` if it learns from its rows), put into ``Chain(blender, steps=[...])``.
"""

from __future__ import annotations

import hashlib
import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from comp.decision import DefaultDecision
from comp.errors import ConfigError, DataError
from comp.metrics import check_labels, check_proba, check_task, get_metric, score


def get_params(estimator) -> dict[str, Any]:
    """The estimator's ``__init__`` parameters and their current values (scikit-learn's convention:
    every parameter is stored under its own name)."""
    names = [p for p in inspect.signature(type(estimator).__init__).parameters if p != "self"]
    return {name: getattr(estimator, name) for name in names}


def clone(estimator):
    """A new, unfitted estimator with the same parameters."""
    return type(estimator)(**get_params(estimator))


def check_members(M, what: str = "member probabilities") -> np.ndarray:
    """``M`` as float64 ``(n_members, n_samples, n_classes)``; one ``(n_samples, n_classes)`` matrix is
    one member."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim == 2:
        M = M[None]
    if M.ndim != 3 or 0 in M.shape:
        raise DataError(f"{what} must be a non-empty (n_members, n_samples, n_classes) array, got shape {M.shape}")
    if not np.isfinite(M).all():
        raise DataError(f"{what} contain NaN or infinite values; fix the member runs before blending")
    return M


def fold_ids(folds, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """``folds`` as a ``(n_samples,)`` array and its distinct ids (sorted)."""
    folds = np.asarray(folds).reshape(-1)
    if folds.size != n_samples:
        raise DataError(f"folds has {folds.size} entries for {n_samples} rows; give one fold id per row")
    return folds, np.unique(folds)


def _rows(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The rows of members ``(n_members, n, C)`` or of probabilities ``(n, C)``."""
    return X[:, rows] if X.ndim == 3 else X[rows]


class Chain:
    """Members -> ``blender`` -> ``steps`` -> ``decision``, fitted on OOF probabilities.

    Parameters: ``blender`` (``fit(M, Y)``, ``transform(M)``), ``steps`` (probability steps),
    ``decision`` (default: ``DefaultDecision(task)``), ``task``.

    ``fit(M, Y, folds)``: ``M`` ``(n_members, n_samples, n_classes)``, ``Y`` 0/1 ``(n_samples,
    n_classes)``, ``folds`` ``(n_samples,)`` fold ids (needed when a step cross-fits its output).
    Sets ``blender_``, ``steps_``, ``decision_`` (each fitted on all rows, for new data) and
    ``oof_`` ``(n_samples, n_classes)``: the probabilities the decision was fitted on, cross-fitted
    wherever a step asks for it. For a run these are its OOF probabilities.
    """

    def __init__(self, blender, steps: Sequence = (), decision=None, task: str = "multilabel"):
        self.blender = blender
        self.steps = steps
        self.decision = decision
        self.task = task

    def fit(self, M, Y, folds=None) -> Chain:
        task = check_task(self.task)
        M = check_members(M)
        Y = check_labels(Y, task, "Y")
        if M.shape[1:] != Y.shape:
            raise DataError(
                f"members have {M.shape[1]} rows x {M.shape[2]} classes but the labels have shape {Y.shape}"
            )
        if folds is not None:
            folds, _ = fold_ids(folds, Y.shape[0])
        self.blender_, X = _fit_step(self.blender, M, Y, folds)
        self.steps_ = []
        for step in self.steps:
            fitted, X = _fit_step(step, X, Y, folds)
            self.steps_.append(fitted)
        self.oof_ = check_proba(X, Y.shape, task, "blended probabilities")
        decision = DefaultDecision(task) if self.decision is None else self.decision
        self.decision_ = clone(decision).fit(self.oof_, Y)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "decision_"):
            raise RuntimeError("Chain is not fitted; call fit(M, Y, folds) first")

    def predict_proba(self, M) -> np.ndarray:
        """Probabilities ``(n_samples, n_classes)`` for members ``M`` ``(n_members, n_samples, n_classes)``."""
        self._check_fitted()
        X = self.blender_.transform(check_members(M))
        for step in self.steps_:
            X = step.transform(X)
        return X

    def predict(self, M) -> np.ndarray:
        """0/1 labels ``(n_samples, n_classes)``: the fitted decision on :meth:`predict_proba`."""
        self._check_fitted()
        return self.decision_.transform(self.predict_proba(M))


# Fitted cross-fitted steps by (step, rows): nested cross-fitting fits a stack on the same rows many
# times (fold k's chain without fold j, fold j's without fold k; the chain on all folds but k and
# cross_fit's copy for fold k), so K folds need 1 + K + K(K-1)/2 distinct fits instead of (K+1)^2 - K.
# Fits are deterministic, so a hit returns what a new fit would; fitted steps are never changed.
_FITTED: OrderedDict[tuple, Any] = OrderedDict()
_FITTED_MAX = 64


def _fit_cached(step, X: np.ndarray, Y: np.ndarray):
    if not getattr(step, "cross_fit_output", False):
        return clone(step).fit(X, Y)
    digest = hashlib.blake2b(np.ascontiguousarray(X).tobytes(), digest_size=20)
    digest.update(np.ascontiguousarray(Y).tobytes())
    key = (type(step).__qualname__, repr(sorted(get_params(step).items())), X.shape, Y.shape, digest.hexdigest())
    if key in _FITTED:
        _FITTED.move_to_end(key)
        return _FITTED[key]
    fitted = _FITTED[key] = clone(step).fit(X, Y)
    while len(_FITTED) > _FITTED_MAX:
        _FITTED.popitem(last=False)
    return fitted


def _fit_step(step, X: np.ndarray, Y: np.ndarray, folds: np.ndarray | None):
    """The step fitted on all rows, and the output the next step is fitted on."""
    fitted = _fit_cached(step, X, Y)
    if not getattr(step, "cross_fit_output", False):
        return fitted, fitted.transform(X)
    name = type(step).__name__
    if folds is None:
        raise ConfigError(f"{name} is fitted out of fold: give the chain the fold id of every row")
    _, ids = fold_ids(folds, Y.shape[0])
    if ids.size < 2:
        raise ConfigError(
            f"{name} needs at least 2 folds among its fitting rows to predict them out of fold, got {ids.size}; "
            "train the members with more folds"
        )
    out = None
    for k in ids:
        held = folds == k
        part = _fit_cached(step, _rows(X, ~held), Y[~held]).transform(_rows(X, held))
        if out is None:
            out = np.empty((Y.shape[0], part.shape[1]))
        out[held] = part
    return fitted, out


@dataclass
class CrossFit:
    """A chain's honest estimate: fold k predicted by the chain fitted on the other folds.

    ``proba`` ``(n_samples, n_classes)`` probabilities, ``labels`` ``(n_samples, n_classes)`` int
    decisions, ``folds`` the fold ids in order, ``per_fold`` the metric on each fold's rows (in
    ``folds`` order), ``score`` the metric on all rows, ``thresholds`` ``(n_folds, n_classes)``
    (the decision fitted without each fold).
    """

    metric: str
    proba: np.ndarray
    labels: np.ndarray
    folds: list
    per_fold: list[float]
    score: float
    thresholds: np.ndarray

    @property
    def greater_is_better(self) -> bool:
        return get_metric(self.metric).greater_is_better


def cross_fit(chain: Chain, M, Y, folds, metric: str) -> CrossFit:
    """The honest estimate of ``chain``: for each fold k, a copy fitted on the other folds' rows (with
    their fold ids, so steps that cross-fit their output fold again inside) predicts fold k; scored
    with ``metric`` (label metrics on the labels, probability metrics on the probabilities).

    ``M`` ``(n_members, n_samples, n_classes)``, ``Y`` ``(n_samples, n_classes)``, ``folds`` ``(n_samples,)``.
    """
    task = check_task(chain.task)
    spec = get_metric(metric)
    M = check_members(M)
    Y = check_labels(Y, task, "Y")
    folds, ids = fold_ids(folds, Y.shape[0])
    if ids.size < 2:
        raise ConfigError(f"the honest estimate needs at least 2 folds, got {ids.size}")
    proba = np.zeros(Y.shape)
    labels = np.zeros(Y.shape, dtype=np.int64)
    thresholds = []
    for k in ids:
        held = folds == k
        fitted = clone(chain).fit(M[:, ~held], Y[~held], folds[~held])
        proba[held] = fitted.predict_proba(M[:, held])
        labels[held] = fitted.decision_.transform(proba[held])
        thresholds.append(np.asarray(fitted.decision_.thresholds_, dtype=float))
    pred = proba if spec.needs_proba else labels
    per_fold = [float(score(metric, Y[folds == k], pred[folds == k], task)) for k in ids]
    return CrossFit(
        metric, proba, labels, ids.tolist(), per_fold, float(score(metric, Y, pred, task)), np.array(thresholds)
    )
