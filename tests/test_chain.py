"""The cross-fitting core: a chain of estimators fitted on OOF probabilities, and its honest estimate."""

import numpy as np
import pytest

from comp.blend import CaruanaBlender, MeanBlender
from comp.chain import Chain, clone, cross_fit, get_params
from comp.errors import DataError
from comp.metrics import score
from comp.thresholds import DefaultDecision, ThresholdOptimizer


def _data(seed=0, n=300, C=3):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, C)) < np.linspace(0.15, 0.4, C)).astype(int)
    M = np.stack([1 / (1 + np.exp(-(np.where(Y, 1.0, -1.0) + rng.normal(0, 1.0, Y.shape)))) for _ in range(2)])
    return M, Y, np.arange(n) % 4


class PriorShift:
    """A new post-processor in one class: rescale each class's odds so that the mean probability on
    the fitting rows matches the class's prevalence there. Its output on its own rows is what it
    was fitted to match, so the chain fits what follows on its out-of-fold output."""

    cross_fit_output = True

    def __init__(self, strength: float = 1.0):
        self.strength = strength

    def fit(self, P, Y):
        odds = lambda p: p / (1 - p)  # noqa: E731
        self.shift_ = self.strength * (
            np.log(odds(np.clip(Y.mean(0), 1e-3, 1 - 1e-3))) - np.log(odds(np.clip(P.mean(0), 1e-3, 1 - 1e-3)))
        )
        return self

    def transform(self, P):
        logit = np.log(P / (1 - P)) + self.shift_
        return 1 / (1 + np.exp(-logit))


def test_a_chain_is_blender_then_steps_then_decision():
    M, Y, folds = _data()
    chain = Chain(MeanBlender(), decision=ThresholdOptimizer()).fit(M, Y, folds)
    P = M.mean(0)
    np.testing.assert_array_equal(chain.oof_, P)
    np.testing.assert_array_equal(chain.decision_.thresholds_, ThresholdOptimizer().fit(P, Y).thresholds_)
    np.testing.assert_array_equal(chain.predict(M), ThresholdOptimizer().fit(P, Y).transform(P))
    assert Chain(MeanBlender()).fit(M, Y).decision_.method_ == "p >= 0.5"  # default decision


def test_a_new_post_processor_is_one_class_and_is_cross_fitted():
    M, Y, folds = _data(1)
    chain = Chain(MeanBlender(), steps=[PriorShift()], decision=ThresholdOptimizer()).fit(M, Y, folds)
    P = M.mean(0)
    for k in range(4):
        held = folds == k
        expected = PriorShift().fit(P[~held], Y[~held]).transform(P[held])
        np.testing.assert_allclose(chain.oof_[held], expected, rtol=0, atol=1e-15)
    # the decision is fitted on the out-of-fold output; new rows go through the step fitted on all rows
    np.testing.assert_array_equal(chain.decision_.thresholds_, ThresholdOptimizer().fit(chain.oof_, Y).thresholds_)
    np.testing.assert_allclose(chain.predict_proba(M), PriorShift().fit(P, Y).transform(P))
    honest = cross_fit(
        Chain(MeanBlender(), steps=[PriorShift()], decision=ThresholdOptimizer()), M, Y, folds, "f1_macro"
    )
    assert 0.3 < honest.score < 1.0


def test_cross_fit_fits_the_whole_chain_without_each_fold():
    M, Y, folds = _data(2)
    chain = Chain(CaruanaBlender("f1_macro"), decision=ThresholdOptimizer("f1_micro"))
    honest = cross_fit(chain, M, Y, folds, "f1_micro")
    for k in range(4):
        held = folds == k
        blender = CaruanaBlender("f1_macro").fit(M[:, ~held], Y[~held])
        opt = ThresholdOptimizer("f1_micro").fit(blender.transform(M[:, ~held]), Y[~held])
        np.testing.assert_array_equal(honest.proba[held], blender.transform(M[:, held]))
        np.testing.assert_array_equal(honest.labels[held], opt.transform(blender.transform(M[:, held])))
        np.testing.assert_array_equal(honest.thresholds[k], opt.thresholds_)
    assert honest.score == score("f1_micro", Y, honest.labels, "multilabel")
    assert honest.folds == [0, 1, 2, 3] and honest.greater_is_better


def test_cross_fit_scores_probability_metrics_on_the_probabilities():
    M, Y, folds = _data(3)
    honest = cross_fit(Chain(MeanBlender(), decision=DefaultDecision()), M, Y, folds, "log_loss")
    assert honest.score == pytest.approx(score("log_loss", Y, M.mean(0), "multilabel"))
    assert not honest.greater_is_better


def test_clone_copies_parameters_not_fitted_state():
    M, Y, _ = _data(4)
    opt = ThresholdOptimizer("f1_micro", min_labels=1).fit(M[0], Y)
    copy = clone(opt)
    assert get_params(copy) == {
        "metric": "f1_micro",
        "task": "multilabel",
        "min_labels": 1,
        "class_offsets": False,
        "max_passes": 10,
    }
    assert copy is not opt and not hasattr(copy, "thresholds_")


def test_members_and_labels_must_line_up():
    M, Y, folds = _data(5)
    with pytest.raises(DataError, match="members have 300 rows x 3 classes but the labels have shape"):
        Chain(MeanBlender()).fit(M, Y[:10])
    with pytest.raises(DataError, match="folds has 3 entries for 300 rows"):
        cross_fit(Chain(MeanBlender()), M, Y, [0, 1, 2], "f1_macro")
    with pytest.raises(RuntimeError, match="Chain is not fitted"):
        Chain(MeanBlender()).predict(M)


def test_nested_cross_fitting_fits_each_distinct_set_of_rows_once():
    fits = []

    class CountingShift(PriorShift):
        def fit(self, P, Y):
            fits.append(len(P))
            return super().fit(P, Y)

    M, Y, folds = _data(6)
    chain = Chain(MeanBlender(), steps=[CountingShift(strength=0.5)], decision=ThresholdOptimizer())
    evaluate = chain.fit(M, Y, folds)
    honest = cross_fit(chain, M, Y, folds, "f1_macro")
    # all rows, each fold left out (K), each pair of folds left out (K(K-1)/2): 1 + 4 + 6
    assert sorted(fits) == [150] * 6 + [225] * 4 + [300]
    # the same as fitting afresh every time
    fresh = [PriorShift(0.5).fit(evaluate.blender_.transform(M)[folds != k], Y[folds != k]) for k in range(4)]
    for k in range(4):
        held = folds == k
        np.testing.assert_array_equal(evaluate.oof_[held], fresh[k].transform(M.mean(0)[held]))
    assert (
        honest.score
        == cross_fit(
            Chain(MeanBlender(), steps=[PriorShift(0.5)], decision=ThresholdOptimizer()), M, Y, folds, "f1_macro"
        ).score
    )
