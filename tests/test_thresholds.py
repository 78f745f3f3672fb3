import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, precision_score, recall_score

from comp import decision, threshold_search
from comp.blend import MeanBlender
from comp.chain import Chain, cross_fit
from comp.errors import ConfigError, DataError
from comp.metrics import METRICS, score, stats_score
from comp.thresholds import (
    DefaultDecision,
    ThresholdOptimizer,
    apply_thresholds,
    exact_thresholds,
)

LABEL_METRICS = [name for name, m in METRICS.items() if not m.needs_proba and name != "f1"]
SK = {"f1": f1_score, "precision": precision_score, "recall": recall_score}


def _data(seed, n=150, C=5):
    """Informative but noisy probabilities; classes need different thresholds."""
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.05, 0.45, C)
    Y = rng.random((n, C)) < prevalence
    logits = np.where(Y, 1.0, -1.0) + rng.normal(0, 1.2, (n, C)) + np.log(prevalence / (1 - prevalence))
    return 1 / (1 + np.exp(-logits)), Y.astype(int)


def _brute_force(p, y, objective):
    """Score of every distinct cut 'p >= v' with sklearn; the best score and the thresholds that
    reach it, placed by the documented midpoint rule."""
    values = np.unique(p)
    scores = np.array([SK[objective](y, p >= v, zero_division=0) for v in values])
    best = scores.max()
    taus = []
    for i in np.flatnonzero(scores == best):
        if i == 0:
            taus.append(min(0.0, values[0]))
        else:
            mid = 0.5 * (values[i - 1] + values[i])
            taus.append(mid if mid > values[i - 1] else values[i])
    return best, np.array(taus)


# ---- exact per-class search -------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=40),
    objective=st.sampled_from(["f1", "precision", "recall"]),
    scale=st.sampled_from([20.0, 0.05]),  # 0.05: values above 0.5 only (and an unpacked sort path)
)
def test_exact_search_equals_brute_force_over_every_cut(data, objective, scale):
    p = np.array([v for v, _ in data]) / scale  # few distinct values: ties and runs of equal p
    y = np.array([lab for _, lab in data])
    (t,), (s,) = exact_thresholds(p[:, None], y[:, None], objective)
    if 0 < y.sum() < len(y):
        best, taus = _brute_force(p, y, objective)
        assert s == pytest.approx(best, abs=1e-12)
        assert SK[objective](y, p >= t, zero_division=0) == pytest.approx(best, abs=1e-12)
        # ties: closest to 0.5, then the higher threshold
        assert t == taus[np.lexsort((-taus, np.abs(taus - 0.5)))[0]]
    elif y.sum() == 0:
        assert not (p >= t).any()
    else:
        assert (p >= t).all()


def test_exact_search_is_never_worse_than_a_91_point_grid():
    P, Y = _data(0, n=400, C=8)
    thresholds, best = exact_thresholds(P, Y)
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    assert len(grid) == 91
    for c in range(Y.shape[1]):
        grid_best = max(f1_score(Y[:, c], P[:, c] >= g, zero_division=0) for g in grid)
        exact = f1_score(Y[:, c], P[:, c] >= thresholds[c])
        assert exact == pytest.approx(best[c], abs=1e-12)
        assert exact >= grid_best - 1e-12
    assert (best > 0).all()


def test_threshold_is_the_midpoint_below_the_best_cut():
    p = np.array([0.1, 0.3, 0.4, 0.8, 0.9])
    y = np.array([0, 0, 1, 1, 1])
    (t,), (s,) = exact_thresholds(p[:, None], y[:, None])
    assert t == pytest.approx(0.35) and s == 1.0


def test_tied_cuts_prefer_the_threshold_closest_to_one_half_then_the_higher():
    # F1 = 2/3 when keeping every row (threshold 0.0) or only p = 0.9 (threshold 0.75)
    p = np.array([0.1, 0.3, 0.6, 0.9])
    y = np.array([1, 0, 0, 1])
    assert f1_score(y, p >= 0.0) == f1_score(y, p >= 0.75) > f1_score(y, p >= 0.45)
    (t,), _ = exact_thresholds(p[:, None], y[:, None])
    assert t == pytest.approx(0.75)
    # recall is 1 for thresholds 0.0, 0.2, 0.4 and 0.65: 0.4 is closest to 0.5
    y = np.array([0, 0, 0, 1])
    (t,), _ = exact_thresholds(np.array([[0.1], [0.3], [0.5], [0.8]]), y[:, None], "recall")
    assert t == pytest.approx(0.4)
    # 0.375 and 0.625 are equally close: the higher wins
    (t,), _ = exact_thresholds(np.array([[0.1], [0.3], [0.45], [0.8]]), y[:, None], "recall")
    assert t == pytest.approx(0.625)


def test_packed_and_argsort_paths_agree():
    P, Y = _data(1)
    t, s = exact_thresholds(P, Y)
    t_shift, s_shift = exact_thresholds(P - 3.0, Y)  # negative values take the argsort path
    np.testing.assert_allclose(s_shift, s)
    np.testing.assert_allclose(t_shift, t - 3.0, atol=1e-12)


def test_all_zero_and_all_one_classes_predict_none_and_all():
    P, Y = _data(2, n=60, C=3)
    Y[:, 0], Y[:, 1] = 0, 1
    P[0, 0] = 1.0  # even a probability of exactly 1 stays below the threshold
    opt = ThresholdOptimizer().fit(P, Y)
    assert opt.thresholds_[0] > 1.0 and opt.thresholds_[1] == 0.0
    labels = opt.transform(P)
    assert labels[:, 0].sum() == 0 and labels[:, 1].all()


# ---- coordinate steps: every cut of one class, scored from statistics, equals the real metric ---


def _with_threshold(metric, Y, P, t, c, value, k):
    t = t.copy()
    t[c] = value
    return stats_score(metric, Y, decision.decide(P, t, "multilabel", k), "multilabel")


def _with_offset(metric, Y, P, o, c, value):
    o = o.copy()
    o[c] = value
    return stats_score(metric, Y, decision.decide(P, o, "multiclass", 0), "multiclass")


def test_coordinate_step_is_exact_for_every_label_metric_and_min_labels():
    rng = np.random.default_rng(5)
    for _ in range(25):
        n, C, k = int(rng.integers(1, 25)), int(rng.integers(1, 5)), int(rng.integers(0, 3))
        Y = rng.random((n, C)) < rng.random(C)
        P = np.round(rng.random((n, C)), 1)
        t = np.round(rng.random(C), 2)
        c = int(rng.integers(0, C))
        top = decision.row_argmax(P)[0]
        for name in LABEL_METRICS:
            m = METRICS[name]
            base, movable, b = threshold_search.multilabel_state(P, P >= t, c, min(k, C), top)
            s, tau = threshold_search.best_cut(m, "multilabel", Y, base, c, P[:, c], movable, b, "threshold")
            if not movable.any():
                continue
            brute = max(_with_threshold(m, Y, P, t, c, v, min(k, C)) for v in [*np.unique(P[:, c]), 2.0])
            assert s == pytest.approx(brute, abs=1e-9), (name, k)
            assert _with_threshold(m, Y, P, t, c, tau, min(k, C)) == pytest.approx(s, abs=1e-9), (name, k)


def test_offset_step_is_exact_for_multiclass_metrics():
    rng = np.random.default_rng(6)
    for _ in range(25):
        n, C = int(rng.integers(1, 25)), int(rng.integers(2, 5))
        Y = np.eye(C, dtype=bool)[rng.integers(0, C, n)]
        P = rng.dirichlet(np.ones(C), n)
        o = rng.normal(0, 0.1, C)
        c = int(rng.integers(0, C))
        scores = P + o
        scores[:, c] = -np.inf
        b, other = decision.row_argmax(scores)
        base = np.zeros_like(Y)
        base[np.arange(n), b] = True
        for name in LABEL_METRICS:
            m = METRICS[name]
            s, tau = threshold_search.best_cut(
                m, "multiclass", Y, base, c, P[:, c] - other, np.ones(n, bool), b, "offset"
            )
            # every distinct margin, just inside, and no row at all
            cuts = [*(np.unique(P[:, c] - other) - 1e-9), np.inf]
            brute = max(_with_offset(m, Y, P, o, c, -v) for v in cuts)
            assert s == pytest.approx(brute, abs=1e-9), name
            assert _with_offset(m, Y, P, o, c, -tau) == pytest.approx(s, abs=1e-9), name


@pytest.mark.parametrize("name", [*LABEL_METRICS, "f1"])
def test_binary_search_is_the_best_of_every_cut(name):
    rng = np.random.default_rng(7)
    for _ in range(5):
        n = int(rng.integers(2, 40))
        y = rng.random(n) < 0.3
        p = np.round(rng.random(n), 1)
        opt = ThresholdOptimizer(name, "binary").fit(p, y)
        best = max(score(name, y, p >= v, "binary") for v in [*np.unique(p), 2.0])
        assert opt.score_ == pytest.approx(best, abs=1e-12)
        assert opt.thresholds_.shape == (1,)


# ---- the estimator ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["f1_micro", "f1_samples", "jaccard_samples", "accuracy"])
def test_coordinate_ascent_beats_one_half_and_the_best_global_threshold(name):
    P, Y = _data(3, n=300, C=6)
    opt = ThresholdOptimizer(name).fit(P, Y)
    at_half = score(name, Y, apply_thresholds(P, np.full(6, 0.5), "multilabel"), "multilabel")
    global_t = opt._global_threshold(P, Y.astype(bool), METRICS[name], 0, None)
    at_global = score(name, Y, apply_thresholds(P, np.full(6, global_t), "multilabel"), "multilabel")
    assert opt.score_ > at_half
    assert opt.score_ >= at_global
    assert opt.n_passes_ >= 1
    assert opt.score_ == pytest.approx(score(name, Y, opt.transform(P), "multilabel"))


def test_f1_macro_search_maximises_every_class_and_beats_one_half():
    P, Y = _data(4)
    opt = ThresholdOptimizer("f1_macro").fit(P, Y)
    assert opt.n_passes_ == 0  # classes separate: no coordinate ascent
    np.testing.assert_allclose(opt.thresholds_, exact_thresholds(P, Y)[0])
    assert opt.score_ > score("f1_macro", Y, (P >= 0.5).astype(int), "multilabel")


def test_min_labels_gives_every_row_its_most_probable_class():
    P = np.array([[0.1, 0.3, 0.2], [0.9, 0.1, 0.1], [0.2, 0.2, 0.1]])
    labels = apply_thresholds(P, [0.5, 0.5, 0.5], "multilabel", min_labels=1)
    np.testing.assert_array_equal(labels, [[0, 1, 0], [1, 0, 0], [1, 0, 0]])  # ties: lower class
    labels = apply_thresholds(P, [0.5, 0.5, 0.5], "multilabel", min_labels=2)
    np.testing.assert_array_equal(labels, [[0, 1, 1], [1, 1, 0], [1, 1, 0]])
    assert apply_thresholds(P, [0.5] * 3, "multilabel").sum() == 1


# in-sample scores with min_labels=1 fitted in, and with it applied to thresholds fitted without it
_MIN_LABELS_GOLDEN = {
    "f1_macro": (0.7056536752202185, 0.6959430473064522),
    "f1_micro": (0.7016393442622951, 0.6998341625207297),
    "jaccard_samples": (0.6158333333333332, 0.6141666666666666),
}


@pytest.mark.parametrize("name", ["f1_macro", "f1_micro", "jaccard_samples"])
def test_min_labels_is_applied_while_fitting(name):
    P, Y = _data(5, n=200, C=4)
    Y[Y.sum(1) == 0, 0] = 1  # every row has a label, so forcing one helps
    opt = ThresholdOptimizer(name, min_labels=1).fit(P, Y)
    labels = opt.transform(P)
    assert (labels.sum(1) >= 1).all()
    assert opt.score_ == pytest.approx(score(name, Y, labels, "multilabel"))
    plain = ThresholdOptimizer(name).fit(P, Y)
    with_min = score(name, Y, apply_thresholds(P, plain.thresholds_, "multilabel", 1), "multilabel")
    if name == "f1_macro":  # guaranteed: the ascent starts from the plain exact thresholds
        assert opt.score_ >= with_min - 1e-12
    # otherwise the ascent starts from one global threshold, so only golden values can pin it
    assert (opt.score_, with_min) == pytest.approx(_MIN_LABELS_GOLDEN[name], abs=1e-12)


@pytest.mark.parametrize("name", ["f1_macro", "recall_macro", "accuracy", "f1_weighted"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multiclass_offsets_never_lower_the_in_sample_score(name, seed):
    rng = np.random.default_rng(seed)
    n, C = 200, 3
    y = rng.choice(C, n, p=[0.6, 0.3, 0.1])
    logits = np.eye(C)[y] + rng.normal(0, 1, (n, C)) + [0.8, 0, -0.5]  # biased towards class 0
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    Y = np.eye(C, dtype=int)[y]
    plain = ThresholdOptimizer(name, "multiclass").fit(P, Y)
    tuned = ThresholdOptimizer(name, "multiclass", class_offsets=True).fit(P, Y)
    np.testing.assert_array_equal(plain.thresholds_, np.zeros(C))
    assert plain.score_ == score(name, Y, np.eye(C, dtype=int)[P.argmax(1)], "multiclass")
    assert tuned.score_ >= plain.score_
    if name == "recall_macro":  # the bias costs the rare class recall; offsets win it back
        assert tuned.score_ > plain.score_
    labels = tuned.transform(P)
    np.testing.assert_array_equal(labels.argmax(1), (P + tuned.thresholds_).argmax(1))
    assert (labels.sum(1) == 1).all()


def test_single_row_and_constant_probabilities_do_not_crash():
    opt = ThresholdOptimizer("f1_micro").fit([[0.3, 0.6]], [[1, 0]])
    np.testing.assert_array_equal(opt.transform([[0.3, 0.6]]), [[1, 0]])
    P = np.full((20, 3), 0.4)
    Y = np.zeros((20, 3), dtype=int)
    Y[::2, 0] = 1
    Y[::3, 1] = 1
    for name in ("f1_macro", "f1_micro", "jaccard_samples"):
        opt = ThresholdOptimizer(name, min_labels=1).fit(P, Y)
        assert np.isfinite(opt.score_) and opt.transform(P).shape == (20, 3)
    Pm = np.full((10, 3), 1 / 3)
    Ym = np.eye(3, dtype=int)[np.arange(10) % 3]
    assert ThresholdOptimizer("f1_macro", "multiclass", class_offsets=True).fit(Pm, Ym).score_ >= score(
        "f1_macro", Ym, np.eye(3, dtype=int)[np.zeros(10, int)], "multiclass"
    )


# ---- honest estimate: the cross-fitted threshold chain -----------------------------------------


def honest_estimate(P, Y, folds, metric="f1_macro", task="multilabel", **kwargs):
    """Thresholds alone as a chain (one member, no blending), cross-fitted."""
    chain = Chain(MeanBlender(task), decision=ThresholdOptimizer(metric, task, **kwargs), task=task)
    return cross_fit(chain, P, Y, folds, metric)


def test_honest_estimate_fits_on_the_other_folds_only():
    P, Y = _data(8, n=200, C=4)
    folds = np.arange(200) % 4
    result = honest_estimate(P, Y, folds, metric="f1_micro")
    for k in range(4):
        held = folds == k
        opt = ThresholdOptimizer("f1_micro").fit(P[~held], Y[~held])
        np.testing.assert_array_equal(result.labels[held], opt.transform(P[held]))
        np.testing.assert_array_equal(result.thresholds[k], opt.thresholds_)
        assert result.per_fold[k] == score("f1_micro", Y[held], result.labels[held], "multilabel")
    assert result.score == score("f1_micro", Y, result.labels, "multilabel")
    np.testing.assert_array_equal(result.proba, P)  # one member, no blending: the probabilities as they are
    # a fold's own labels never reach its predictions
    Y2 = Y.copy()
    Y2[folds == 0] = 1 - Y2[folds == 0]
    again = honest_estimate(P, Y2, folds, metric="f1_micro")
    np.testing.assert_array_equal(again.labels[folds == 0], result.labels[folds == 0])


def test_honest_estimate_is_lower_when_in_sample_tuning_would_leak():
    # Fold 0 separates at 0.7, fold 1 at 0.3: a threshold tuned on a fold's own rows is perfect
    # there, one tuned on the other fold is not. The honest estimate must only see the other fold.
    rng = np.random.default_rng(9)
    n = 200
    folds = np.arange(n) % 2
    y = rng.random(n) < 0.5
    p = np.where(folds == 0, np.where(y, 0.8, 0.6), np.where(y, 0.4, 0.2)) + rng.normal(0, 0.01, n)
    P, Y = p[:, None], y[:, None].astype(int)
    in_fold = [ThresholdOptimizer().fit(P[folds == k], Y[folds == k]).score_ for k in (0, 1)]
    in_sample = ThresholdOptimizer().fit(P, Y).score_
    honest = honest_estimate(P, Y, folds)
    assert in_fold == [1.0, 1.0]
    assert honest.per_fold[1] == 0.0  # fold 0's threshold (0.7) predicts nothing in fold 1
    assert honest.score < 0.6 < in_sample


# ---- what the optimizer reports it did --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "task", "kwargs", "method"),
    [
        ("f1_macro", "multilabel", {}, "exact per-class F1 search"),
        ("f1_weighted", "multilabel", {}, "exact per-class F1 search"),
        ("precision_macro", "multilabel", {}, "exact per-class precision search"),
        ("recall_macro", "multilabel", {}, "exact per-class recall search"),
        (
            "f1_macro",
            "multilabel",
            {"min_labels": 1},
            "exact per-class F1 search, then coordinate ascent with min_labels=1",
        ),
        ("f1_micro", "multilabel", {}, "best global threshold, then per-class coordinate ascent"),
        ("f1_macro", "binary", {}, "exact search over every cut of the positive class"),
        ("f1", "binary", {}, "exact search over every cut of the positive class"),
        ("f1_macro", "multiclass", {}, "argmax"),
    ],
)
def test_the_optimizer_reports_the_search_it_ran(name, task, kwargs, method):
    P, Y = _data(10, n=120, C=3)
    if task == "binary":
        P, Y = P[:, :1], Y[:, :1]
    elif task == "multiclass":
        Y = np.eye(3, dtype=int)[P.argmax(1)]
        P = P / P.sum(1, keepdims=True)
    assert ThresholdOptimizer(name, task, **kwargs).fit(P, Y).method_ == method


def test_multiclass_offsets_report_whether_they_were_kept():
    rng = np.random.default_rng(0)
    y = rng.choice(3, 200, p=[0.6, 0.3, 0.1])
    logits = np.eye(3)[y] + rng.normal(0, 1, (200, 3)) + [0.8, 0, -0.5]
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    opt = ThresholdOptimizer("recall_macro", "multiclass", class_offsets=True).fit(P, np.eye(3, dtype=int)[y])
    assert opt.method_ == "argmax + class offsets" and opt.thresholds_.any()


def test_default_decision_is_one_half_or_argmax():
    P, Y = _data(11, n=50, C=3)
    d = DefaultDecision("multilabel", min_labels=1).fit(P, Y)
    np.testing.assert_array_equal(d.thresholds_, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(d.transform(P), apply_thresholds(P, [0.5] * 3, "multilabel", 1))
    assert d.method_ == "p >= 0.5 with min_labels=1" and d.metric is None
    m = DefaultDecision("multiclass").fit(P)
    assert m.method_ == "argmax"
    np.testing.assert_array_equal(m.transform(P).argmax(1), P.argmax(1))


# ---- errors -----------------------------------------------------------------------------------


def test_probability_metrics_have_no_thresholds():
    with pytest.raises(ConfigError, match="metric 'roc_auc_macro' scores probabilities"):
        ThresholdOptimizer("roc_auc_macro").fit(np.full((3, 1), 0.5), np.ones((3, 1)))


def test_class_offsets_need_a_multiclass_task():
    with pytest.raises(ConfigError, match="class_offsets applies to multiclass tasks only"):
        ThresholdOptimizer(class_offsets=True).fit(np.full((3, 1), 0.5), np.ones((3, 1)))


def test_bad_min_labels_and_unfitted_transform():
    with pytest.raises(ConfigError, match="min_labels must be a non-negative integer, got -1"):
        ThresholdOptimizer(min_labels=-1).fit(np.full((3, 1), 0.5), np.ones((3, 1)))
    with pytest.raises(RuntimeError, match="not fitted"):
        ThresholdOptimizer().transform(np.full((3, 1), 0.5))


def test_threshold_count_must_match_the_columns():
    with pytest.raises(DataError, match="2 thresholds for 3 probability columns"):
        apply_thresholds(np.full((2, 3), 0.5), [0.5, 0.5], "multilabel")


def test_honest_estimate_needs_two_folds_and_one_id_per_row():
    P, Y = np.full((4, 1), 0.5), np.ones((4, 1), dtype=int)
    with pytest.raises(ConfigError, match="needs at least 2 folds, got 1"):
        honest_estimate(P, Y, np.zeros(4))
    with pytest.raises(DataError, match="folds has 3 entries for 4 rows"):
        honest_estimate(P, Y, [0, 1, 0])
