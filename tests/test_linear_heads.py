"""The one-vs-rest split shared by the linear head (tfidf, embeddings) and nbsvm, its constant-class
handling, and the logits -> probabilities map of the transformer family."""

import numpy as np
import pytest

from comp.models import nbsvm
from comp.models.base import FoldContext, TaskInfo
from comp.models.common import LinearHead, one_vs_rest
from comp.models.hf.losses import probabilities

TEXTS = [f"{w} {v} text" for w in ("joy happy", "sad gloomy", "angry mad") for v in ("one", "two", "three", "four")]
# class a follows the first word group, class b is never present, class c is always present
Y = np.array([[1, 0, 1]] * 4 + [[0, 0, 1]] * 8)


def test_one_vs_rest_hard_targets_keep_every_row_and_give_constants_their_prevalence():
    warnings = []
    models, problems = one_vs_rest(Y, warn=warnings.append, name="abc".__getitem__)
    assert models == [None, 0.0, 1.0]
    assert [p.column for p in problems] == [0]
    assert problems[0].rows is None and problems[0].weight is None
    np.testing.assert_array_equal(problems[0].y, Y[:, 0])
    assert warnings == [
        "class 'b' is all 0 in the training rows; predicting its constant prevalence 0",
        "class 'c' is all 1 in the training rows; predicting its constant prevalence 1",
    ]


def test_one_vs_rest_soft_targets_become_weighted_copies():
    T = np.array([[0.25, 0.0], [1.0, 0.0], [0.0, 0.0]])
    w = np.array([1.0, 2.0, 4.0])
    warnings = []
    models, problems = one_vs_rest(T, w, warnings.append)
    [problem] = problems
    # row 0 is a positive of weight 0.25 and a negative of weight 0.75; row 1 only a positive
    assert problem.rows.tolist() == [0, 1, 0, 2] and problem.y.tolist() == [1, 1, 0, 0]
    np.testing.assert_allclose(problem.weight, [0.25, 2.0, 0.75, 4.0], rtol=0, atol=1e-15)
    assert models == [None, 0.0]
    assert warnings == [
        "class '1' carries weight on one side only in the training rows; predicting its constant prevalence 0.000"
    ]


@pytest.mark.parametrize("family", ["linear", "nbsvm"])
def test_both_families_predict_a_constant_class_and_fit_the_others(family):
    warnings = []
    if family == "linear":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer().fit(TEXTS)
        model = LinearHead("multilabel", warn=warnings.append, class_names=list("abc"))
        P = model.fit(vectorizer.transform(TEXTS), Y).predict_proba(vectorizer.transform(TEXTS))
    else:
        context = FoldContext(0, 0, None, None, warn=warnings.append)
        model = nbsvm.Model(nbsvm.Config(), TaskInfo("multilabel", list("abc")), context)
        P = model.fit(TEXTS, Y).predict_proba(TEXTS)
    assert P.shape == (12, 3)
    np.testing.assert_array_equal(P[:, 1], 0.0)
    np.testing.assert_array_equal(P[:, 2], 1.0)
    assert P[:4, 0].min() > P[4:, 0].max()  # the fitted class separates its rows
    assert len(warnings) == 2 and "class 'b' is all 0" in warnings[0] and "class 'c' is all 1" in warnings[1]


def test_probabilities_are_sigmoids_or_row_softmax_without_overflow():
    logits = np.array([[0.0, np.log(3.0)], [1000.0, -1000.0]], dtype=np.float32)
    np.testing.assert_allclose(probabilities(logits, "multilabel"), [[0.5, 0.75], [1.0, 0.0]], rtol=0, atol=1e-7)
    soft = probabilities(logits, "multiclass")
    np.testing.assert_allclose(soft, [[0.25, 0.75], [1.0, 0.0]], rtol=0, atol=1e-7)
    assert soft.dtype == np.float64 and np.isfinite(soft).all()
    np.testing.assert_allclose(probabilities(np.array([[2.0]]), "binary"), [[1 / (1 + np.exp(-2.0))]], rtol=1e-15)
