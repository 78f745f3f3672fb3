import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from comp.errors import ConfigError, DataError
from comp.metrics import METRICS, per_class, score

LABEL_METRICS = [name for name, m in METRICS.items() if not m.needs_proba]


def _multilabel(seed, n=120, C=6):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, C)) < rng.uniform(0.05, 0.5, C)).astype(int)
    Y[:, 0] = 0  # a class with no support
    Y[:5] = 0  # rows without labels
    P = np.clip(0.35 * Y + rng.random((n, C)) * 0.7, 0, 1)
    L = (P >= 0.5).astype(int)
    L[:3] = 0  # empty predictions, some against empty truth
    L[:, 1] = 0  # a class never predicted
    return Y, L, P


def _multiclass(seed, n=120, C=4, drop=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    if drop is not None:
        y[y == drop] = (drop + 1) % C
    logits = 1.5 * np.eye(C)[y] + rng.normal(size=(n, C))
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pred = P.argmax(1)
    return y, pred, P, np.eye(C, dtype=int)[y], np.eye(C, dtype=int)[pred]


def _binary(seed, n=120):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    return y, (p >= 0.5).astype(int), p


def _sk_label_metric(name, yt, yp, task, C):
    """sklearn's value; ``yt``/``yp`` are indicator matrices (multilabel) or label vectors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # explicit zero_division: sklearn must not need to warn
        if name in ("f1_samples", "jaccard_samples"):
            if task != "multilabel":  # sklearn's 'samples' needs indicator matrices
                C = 2 if task == "binary" else C
                yt, yp = np.eye(C, dtype=int)[yt], np.eye(C, dtype=int)[yp]
            fn = skm.f1_score if name == "f1_samples" else skm.jaccard_score
            return fn(yt, yp, average="samples", zero_division=1)
        if name == "accuracy":
            return skm.accuracy_score(yt, yp)
        if name == "f1":
            return skm.f1_score(yt, yp, zero_division=0)
        kind, average = name.split("_")
        fn = {"f1": skm.f1_score, "recall": skm.recall_score, "precision": skm.precision_score}[kind]
        return fn(yt, yp, average=average, zero_division=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", [n for n in LABEL_METRICS if n != "f1"])
def test_label_metrics_match_sklearn_multilabel(name, seed):
    Y, L, _ = _multilabel(seed)
    assert score(name, Y, L, "multilabel") == pytest.approx(_sk_label_metric(name, Y, L, "multilabel", 6), abs=1e-12)


@pytest.mark.parametrize("drop", [None, 2])  # drop=2: a class absent from the truth
@pytest.mark.parametrize("name", [n for n in LABEL_METRICS if n != "f1"])
def test_label_metrics_match_sklearn_multiclass(name, drop):
    y, pred, _, Y, L = _multiclass(3, drop=drop)
    expected = _sk_label_metric(name, y, pred, "multiclass", 4)
    assert score(name, Y, L, "multiclass") == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", LABEL_METRICS)
def test_label_metrics_match_sklearn_binary(name):
    y, pred, _ = _binary(4)
    expected = _sk_label_metric(name, y, pred, "binary", 2)
    assert score(name, y.reshape(-1, 1), pred.reshape(-1, 1), "binary") == pytest.approx(expected, abs=1e-12)
    assert score(name, y, pred, "binary") == pytest.approx(expected, abs=1e-12)  # 1-D is one column


def test_binary_macro_averages_only_present_classes_like_sklearn():
    y = np.ones(5, dtype=int)
    assert score("f1_macro", y, y, "binary") == 1.0 == skm.f1_score(y, y, average="macro")


def test_multilabel_macro_counts_a_class_without_support_or_predictions_as_zero():
    Y = np.array([[1, 0], [0, 0]])
    assert score("f1_macro", Y, Y, "multilabel") == 0.5
    assert skm.f1_score(Y, Y, average="macro", zero_division=0) == 0.5


def test_jaccard_samples_counts_empty_against_empty_as_one():
    Y = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 0]])
    L = np.array([[0, 0, 0], [1, 0, 1], [0, 0, 0]])
    # rows: empty vs empty = 1; |{0}| / |{0, 1, 2}| = 1/3; nothing predicted = 0
    assert score("jaccard_samples", Y, L, "multilabel") == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert score("f1_samples", Y, L, "multilabel") == pytest.approx((1 + 0.5 + 0) / 3)


def test_roc_auc_macro_averages_classes_with_both_labels():
    Y = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 1], [0, 0, 0]])
    P = np.array([[0.9, 0.5, 0.2], [0.4, 0.5, 0.3], [0.4, 0.5, 0.1], [0.1, 0.5, 0.5]])
    # class 0: 3 of 4 (positive, negative) pairs ordered right and one tie (counts 1/2) -> 0.875;
    # class 1 has no positive and is skipped; class 2: 1 of 4 pairs ordered right -> 0.25
    assert score("roc_auc_macro", Y, P, "multilabel") == pytest.approx((0.875 + 0.25) / 2, abs=1e-12)
    assert score("roc_auc_macro", Y[:, :1], P[:, :1], "binary") == pytest.approx(0.875, abs=1e-12)
    # a model that ranks every positive above every negative scores 1, the reversed one 0
    assert score("roc_auc_macro", Y[:, :1], Y[:, :1] * 0.8 + 0.1, "binary") == 1.0
    assert score("roc_auc_macro", Y[:, :1], 0.9 - Y[:, :1] * 0.8, "binary") == 0.0
    assert METRICS["roc_auc_macro"].greater_is_better and METRICS["roc_auc_macro"].needs_proba


def test_roc_auc_macro_is_nan_when_no_class_has_both_labels():
    assert np.isnan(score("roc_auc_macro", np.zeros((4, 2)), np.full((4, 2), 0.3), "multilabel"))


def test_log_loss_is_the_mean_cross_entropy_and_lower_is_better():
    Y = np.array([[1, 0], [0, 1]])
    P = np.array([[0.8, 0.4], [0.3, 0.9]])
    expected = -(np.log(0.8) + np.log(0.6) + np.log(0.7) + np.log(0.9)) / 4  # every (row, class) pair
    assert score("log_loss", Y, P, "multilabel") == pytest.approx(expected, rel=1e-12)
    Ym = np.array([[0, 1, 0], [1, 0, 0]])
    Pm = np.array([[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]])
    assert score("log_loss", Ym, Pm, "multiclass") == pytest.approx(-(np.log(0.7) + np.log(0.5)) / 2, rel=1e-12)
    # a class never seen in the true labels still counts as a column of the probabilities
    assert score("log_loss", Ym[:, [1, 0, 2]][:1], Pm[:1], "multiclass") == pytest.approx(-np.log(0.2), rel=1e-12)
    assert score("log_loss", [1, 0], [0.9, 0.2], "binary") == pytest.approx(-(np.log(0.9) + np.log(0.8)) / 2, rel=1e-12)
    # a certain, wrong probability is clipped to float64 eps: large but finite
    eps = np.finfo(np.float64).eps
    assert score("log_loss", [1], [0.0], "binary") == pytest.approx(-np.log(eps), rel=1e-12)
    assert not METRICS["log_loss"].greater_is_better and METRICS["log_loss"].needs_proba


def test_per_class_matches_sklearn():
    Y, L, _ = _multilabel(5)
    got = per_class(Y, L)
    p, r, f, s = skm.precision_recall_fscore_support(Y, L, average=None, zero_division=0)
    np.testing.assert_allclose(got["precision"], p)
    np.testing.assert_allclose(got["recall"], r)
    np.testing.assert_allclose(got["f1"], f)
    np.testing.assert_array_equal(got["support"], s)
    np.testing.assert_array_equal(got["n_predicted"], L.sum(0))


def test_from_counts_scores_a_batch_of_count_vectors():
    Y, L, _ = _multilabel(6)
    Y, L = Y.astype(bool), L.astype(bool)
    tp = np.stack([(Y & L).sum(0), (Y & ~L).sum(0)])
    fp = np.stack([(~Y & L).sum(0), (~Y & ~L).sum(0)])
    for name in ("f1_macro", "f1_micro", "f1_weighted", "recall_macro", "precision_macro"):
        batch = METRICS[name].from_counts(tp, fp, Y.sum(0), "multilabel")
        assert batch.shape == (2,)
        assert batch[0] == pytest.approx(score(name, Y, L, "multilabel"))
        assert batch[1] == pytest.approx(score(name, Y, ~L, "multilabel"))


def test_unknown_metric_is_a_config_error():
    with pytest.raises(ConfigError, match="metric 'f2' is unknown; choose one of f1_macro"):
        score("f2", np.ones((2, 1)), np.ones((2, 1)), "multilabel")


def test_positive_f1_needs_a_binary_task():
    with pytest.raises(ConfigError, match="positive-class F1 of a binary task, not of a multilabel task"):
        score("f1", np.ones((2, 2)), np.ones((2, 2)), "multilabel")


@pytest.mark.parametrize(
    ("name", "Y", "pred", "task", "match"),
    [
        (
            "f1_macro",
            np.ones((3, 2)),
            np.ones((3, 3)),
            "multilabel",
            r"shape \(3, 3\) but Y_true has shape \(3, 2\)",
        ),
        ("f1_macro", np.full((3, 2), 2), np.ones((3, 2)), "multilabel", "must hold only 0 and 1.*found 2"),
        ("f1_macro", np.ones((3, 2)), np.ones((3, 2)), "multiclass", "must be one-hot; row 0 has 2 ones"),
        ("f1_macro", np.ones((3, 2)), np.ones((3, 2)), "binary", "must have one column"),
        ("log_loss", np.ones((3, 1)), np.full((3, 1), np.nan), "binary", "contain NaN or infinite"),
        ("log_loss", np.ones((3, 1)), np.ones((2, 1)), "binary", r"probabilities have shape \(2, 1\)"),
    ],
)
def test_bad_inputs_are_data_errors(name, Y, pred, task, match):
    with pytest.raises(DataError, match=match):
        score(name, Y, pred, task)


def test_unknown_task_is_a_config_error():
    with pytest.raises(ConfigError, match="task 'regression' is not one of multilabel"):
        score("f1_macro", np.ones((2, 1)), np.ones((2, 1)), "regression")


@pytest.mark.parametrize("task", ["multilabel", "multiclass", "binary"])
def test_log_loss_equals_sklearns(task):
    # comp keeps its own expression because it is faster (bench/bench_metrics.py); the values must not differ
    from sklearn.metrics import log_loss as sk_log_loss

    rng = np.random.default_rng(3)
    n, k = 200, 1 if task == "binary" else 5
    P = rng.random((n, k))
    if task == "multiclass":
        P = P / P.sum(1, keepdims=True)
        Y = np.eye(k, dtype=int)[rng.integers(0, k, n)]
        expected = sk_log_loss(Y.argmax(1), P, labels=np.arange(k))
    else:
        Y = (rng.random((n, k)) < 0.3).astype(int)
        expected = sk_log_loss(Y.ravel(), np.column_stack([1 - P.ravel(), P.ravel()]), labels=[0, 1])
    assert score("log_loss", Y, P, task) == pytest.approx(expected, rel=1e-12)
