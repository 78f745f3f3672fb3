"""Same inputs and seed give the same bytes: a resumed run can be compared with an uninterrupted one.

The shipped tfidf config fits its classes in parallel; with liblinear in threads that was not
reproducible (comp.models.common explains why), in processes it is.
"""

import numpy as np

from comp.models import tfidf
from comp.models.base import FoldContext, TaskInfo
from comp.models.common import LinearHead
from tests.tiny_models import CLASSES, synthetic


def test_parallel_class_fits_are_bit_identical_to_sequential_ones(tmp_path):
    texts, Y = synthetic(400)
    task = TaskInfo("multilabel", CLASSES)
    context = FoldContext(fold=0, seed=3, cache_dir=tmp_path, fold_dir=tmp_path)
    config = tfidf.Config(word_ngrams=[1, 2], char_ngrams=[2, 4], min_df=1)
    runs = []
    for n_jobs in (1, 2, 2):
        config.n_jobs = n_jobs
        model = tfidf.Model(config, task, context).fit(texts[:300], Y[:300])
        runs.append(model.predict_proba(texts[300:]))
    for other in runs[1:]:
        assert other.tobytes() == runs[0].tobytes()


def test_linear_head_warnings_from_worker_processes_reach_the_caller(recwarn):
    rng = np.random.default_rng(0)
    X = rng.random((60, 5))
    Y = (rng.random((60, 3)) < 0.5).astype(np.uint8)
    LinearHead("multilabel", max_iter=1, n_jobs=2).fit(X, Y)
    assert any("ConvergenceWarning" in type(w.message).__name__ or "converge" in str(w.message) for w in recwarn)


def test_nbsvm_is_reproducible(tmp_path):
    from comp.models import nbsvm

    texts, Y = synthetic(200, seed=4)
    task = TaskInfo("multilabel", CLASSES)
    context = FoldContext(fold=0, seed=1, cache_dir=tmp_path, fold_dir=tmp_path)
    first, second = (
        nbsvm.Model(nbsvm.Config(), task, context).fit(texts[:150], Y[:150]).predict_proba(texts[150:])
        for _ in range(2)
    )
    assert first.tobytes() == second.tobytes()
