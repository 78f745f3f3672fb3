"""Stacking: a meta-model per class on every member's probabilities for all classes.

The inputs of each class's meta-model are all members' OOF probabilities for *all* classes, as
logits (multiclass: log-probabilities), standardised with the fitting rows' mean and spread; so a
class's model can use the other classes' scores (label co-occurrence on multi-label data). The
default meta-model is an L2-regularised logistic regression (scikit-learn, lbfgs; deterministic);
``meta_model="lightgbm"`` uses gradient-boosted trees (the optional extra ``comp[stack]``).
Multilabel: one binary model per class; binary: one model; multiclass: one multinomial model (a
coefficient vector per class, coupled by the softmax).

A meta-model predicts its own fitting rows better than new ones, so ``StackBlender`` has
``cross_fit_output = True``: in a ``comp.chain.Chain`` the run's OOF for fold k comes from a
meta-model fitted on the other folds' OOF rows only, and the thresholds are fitted on those
probabilities. Test rows use the meta-model fitted on every OOF row.
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn.linear_model import LogisticRegression

from comp.chain import check_members
from comp.errors import ConfigError, DataError
from comp.metrics import check_labels, check_task

META_MODELS = ("logistic", "lightgbm")
_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before the log: logits within +-13.8


def check_meta_model(name: str) -> str:
    """``name`` if it is a meta-model comp has and its package is installed; one line otherwise."""
    if name not in META_MODELS:
        raise ConfigError(f"unknown meta-model '{name}'; choose one of {', '.join(META_MODELS)}")
    if name == "lightgbm":
        try:
            import lightgbm  # noqa: F401
        except ImportError:
            raise ConfigError(
                "meta-model 'lightgbm' needs the LightGBM package: pip install 'comp[stack]' (or pip install lightgbm)"
            ) from None
    return name


@functools.cache
def _controller():
    """The BLAS/OpenMP thread pools of the loaded libraries (found once: finding them takes ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_thread():
    return _controller().limit(limits=1)


class _Constant:
    """The model of a class whose fitting rows all have one label: that label's probability."""

    def __init__(self, p: float):
        self.p = p

    def positive(self, X: np.ndarray) -> np.ndarray:
        return np.full(X.shape[0], self.p)


class StackBlender:
    """Per-class meta-models on all members' probabilities for all classes.

    Parameters: ``task``; ``meta_model`` "logistic" or "lightgbm"; ``C`` (logistic: inverse L2
    strength on the standardised inputs); ``n_estimators``, ``learning_rate``, ``num_leaves``
    (lightgbm); ``seed``.

    ``fit(M, Y)``: ``M`` ``(n_members, n_samples, n_classes)``, ``Y`` ``(n_samples, n_classes)``.
    Sets ``mean_``, ``scale_`` ``(n_members * n_classes,)`` (input standardisation), ``models_``
    (one per class; multiclass: one), ``weights_`` ``(n_members,)``: each member's share of the
    absolute standardised coefficients (lightgbm: of the split gain), summing to one.
    ``transform(M)`` -> probabilities ``(n_samples, n_classes)``.
    """

    cross_fit_output = True

    def __init__(
        self,
        task: str = "multilabel",
        meta_model: str = "logistic",
        C: float = 1.0,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        seed: int = 0,
    ):
        self.task = task
        self.meta_model = meta_model
        self.C = C
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.seed = seed

    # ---- inputs ------------------------------------------------------------------------------
    def _logits(self, M: np.ndarray) -> np.ndarray:
        """``(n_samples, n_members * n_classes)``, member-major: column ``m * n_classes + c``."""
        P = np.clip(M, _EPS, 1 - _EPS)
        F = np.log(P) if self.task == "multiclass" else np.log(P) - np.log1p(-P)
        return F.transpose(1, 0, 2).reshape(M.shape[1], -1)

    def _inputs(self, M) -> np.ndarray:
        M = check_members(M)
        if M.shape[0] * M.shape[2] != self.mean_.size:
            raise DataError(
                f"the stack was fitted on {self.mean_.size} member columns, got {M.shape[0]} members x {M.shape[2]} "
                "classes"
            )
        return (self._logits(M) - self.mean_) / self.scale_

    # ---- fitting -----------------------------------------------------------------------------
    def _model(self):
        if self.meta_model == "logistic":
            return LogisticRegression(C=self.C, max_iter=1000)
        import lightgbm

        return lightgbm.LGBMClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=20,
            reg_lambda=1.0,
            random_state=self.seed,
            deterministic=True,
            force_row_wise=True,
            n_jobs=1,
            verbose=-1,
        )

    def fit(self, M, Y) -> StackBlender:
        task = check_task(self.task)
        check_meta_model(self.meta_model)
        M = check_members(M)
        Y = check_labels(Y, task, "Y")
        # one BLAS/OpenMP thread: the meta-models' inputs are narrow (members x classes columns), so
        # threads cost more than they save, and one thread gives the same bytes on every machine
        with _one_thread():
            return self._fit(M, Y)

    def _fit(self, M: np.ndarray, Y: np.ndarray) -> StackBlender:
        task = self.task
        n_members, _, n_classes = M.shape
        F = self._logits(M)
        self.mean_ = F.mean(axis=0)
        spread = F.std(axis=0)
        self.scale_ = np.where(spread > 1e-12, spread, 1.0)
        X = (F - self.mean_) / self.scale_
        if task == "multiclass":
            y = Y.argmax(axis=1)
            present = np.unique(y)
            model = _Constant(1.0) if present.size == 1 else self._model().fit(X, y)
            self.models_ = [(present, model)]
        else:
            self.models_ = []
            for c in range(n_classes):
                y = Y[:, c].astype(np.int64)
                n_pos = int(y.sum())
                if n_pos in (0, y.size):
                    self.models_.append(_Constant(float(n_pos > 0)))
                else:
                    self.models_.append(self._model().fit(X, y))
        self.weights_ = self._member_shares(n_members, n_classes)
        return self

    def transform(self, M) -> np.ndarray:
        with _one_thread():
            return self._transform(M)

    def _transform(self, M) -> np.ndarray:
        X = self._inputs(M)
        if self.task == "multiclass":
            ((present, model),) = self.models_
            P = np.zeros((X.shape[0], self.mean_.size // check_members(M).shape[0]))
            if isinstance(model, _Constant):
                P[:, present[0]] = 1.0
            else:
                P[:, present] = model.predict_proba(X)
            return P
        return np.column_stack(
            [m.positive(X) if isinstance(m, _Constant) else m.predict_proba(X)[:, 1] for m in self.models_]
        )

    def _member_shares(self, n_members: int, n_classes: int) -> np.ndarray:
        mass = np.zeros(n_members * n_classes)
        models = [m for _, m in self.models_] if self.task == "multiclass" else self.models_
        for model in models:
            if isinstance(model, _Constant):
                continue
            if self.meta_model == "logistic":
                mass += np.abs(model.coef_).sum(axis=0)
            else:
                mass += model.booster_.feature_importance(importance_type="gain")
        per_member = mass.reshape(n_members, n_classes).sum(axis=1)
        total = per_member.sum()
        return per_member / total if total > 0 else np.full(n_members, 1.0 / n_members)
