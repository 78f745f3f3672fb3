"""Several real `comp train` processes on one run (the README's `--fold k` over machines that share a
workspace): the run lock, the fold locks, per-fold facts in done.json, kill -9 and assembly.

Every worker here is a real subprocess running the `comp` command line. The ``blocking`` family
(tests/blocking_family.py) holds a fold at a barrier, so the tests decide when a fold is "being
trained" instead of relying on timing.
"""

import json
import signal
import time

import numpy as np
import pytest
import yaml

from comp.locks import FoldLock, busy_folds, fold_holder, run_lock
from comp.models import FAMILIES
from comp.runs import load_run
from comp.train import train
from tests import blocking_family as bf
from tests.helpers import make_workspace

BLOCKING = "model: blocking\nword_ngrams: [1, 2]\nchar_ngrams: null\nmin_df: 1\nC: 2.0\nn_jobs: 1\n"


@pytest.fixture
def ws(tmp_path, monkeypatch):
    monkeypatch.setitem(FAMILIES, "blocking", "tests.blocking_family")  # for the in-process reference runs
    ws = make_workspace(tmp_path, train_rows=120, test_rows=40)
    (ws.configs_dir / "m.yaml").write_text(BLOCKING)
    return ws


def _train(ws, *args, barrier=None):
    """(exit code, stdout, stderr) of a `comp train` subprocess on the run 'm'."""
    done = bf.run("--workspace", ws.root, "train", ws.configs_dir / "m.yaml", "--folds", 3, *args, barrier=barrier)
    return done.returncode, done.stdout, done.stderr


def _start(ws, *args, barrier=None):
    return bf.start("--workspace", ws.root, "train", ws.configs_dir / "m.yaml", "--folds", 3, *args, barrier=barrier)


def _finish(process, timeout=180):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _release_all(barrier, folds=range(3)):
    for k in folds:
        (barrier / f"release-{k}").write_text("")


def test_a_second_worker_skips_the_fold_in_training_and_the_last_one_assembles(ws, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    first = _start(ws, "--fold", 0, barrier=barrier)
    bf.wait_for(barrier / "started-0", process=first)
    (barrier / "release-1").write_text("")
    (barrier / "release-2").write_text("")
    # a second worker on the whole run, while fold 0 trains in the first
    code, out, err = _train(ws, barrier=barrier)
    assert code == 0, err
    assert f"skipped fold 0: another process is training it (pid {first.pid}, since " in out
    assert "folds 0 still to train" in out
    paths = ws.run("m")
    assert not paths.oof.exists()
    (barrier / "release-0").write_text("")
    code, out, err = _finish(first)
    assert code == 0, err
    assert "m: f1_macro (higher is better) by fold" in out  # the process that finished the last fold assembled the run
    run = load_run(ws, "m")
    facts = [json.loads(paths.fold_done(k).read_text()) for k in range(3)]
    assert [f["pid"] for f in facts][0] == first.pid and len({f["pid"] for f in facts}) == 2
    assert all(f["seconds"] >= 0 and f["train_rows"] + f["valid_rows"] == 120 and f["finished"] for f in facts)
    assert len({f["digest"] for f in facts}) == 1
    record = yaml.safe_load(paths.run_yaml.read_text())
    assert "fold_seconds" not in record  # no read-modify-write of run.yaml per fold
    assert record["seconds"] == pytest.approx(sum(f["seconds"] for f in facts), abs=0.02)
    scores = json.loads(paths.scores.read_text())
    assert [r["seconds"] for r in scores["per_fold"]] == [f["seconds"] for f in facts]
    assert paths.log.read_text().count("done in") == 3  # each fold trained exactly once
    # the same run trained in one process gives the same bytes
    train(ws, ws.configs_dir / "m.yaml", n_folds=3, name="ref")
    np.testing.assert_array_equal(run.oof, load_run(ws, "ref").oof)
    np.testing.assert_array_equal(run.test, load_run(ws, "ref").test)


def test_a_worker_with_another_config_is_refused_by_name(ws, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    first = _start(ws, barrier=barrier)
    bf.wait_for(barrier / "started-0", process=first)
    # the run has no finished fold yet, which would let a corrected config replace it; but it is in training
    code, out, err = _train(ws, "--set", "C=1", barrier=barrier)
    assert code == 1 and "Traceback" not in err
    assert (
        "error: run 'm' already exists with a different config (C: 2.0 -> 1.0), and another process is training "
        f"it (fold 0: pid {first.pid}, since "
    ) in err
    code, out, err = _train(ws, "--force", barrier=barrier)
    assert code == 1
    assert f"run 'm' is being trained by another process (fold 0: pid {first.pid}" in err and "before retraining" in err
    _release_all(barrier)
    code, out, err = _finish(first)
    assert code == 0, err
    assert yaml.safe_load(ws.run("m").run_yaml.read_text())["config"]["C"] == 2.0
    assert ws.run("m").log.read_text().count("done in") == 3


def test_wait_waits_for_the_fold_instead_of_skipping_it(ws, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    first = _start(ws, "--fold", 1, barrier=barrier)
    bf.wait_for(barrier / "started-1", process=first)
    (barrier / "release-0").write_text("")
    (barrier / "release-2").write_text("")
    second = _start(ws, "--wait", barrier=barrier)
    log = ws.run("m").log
    deadline = time.monotonic() + 120
    while "fold 1: waiting for the process training it" not in (log.read_text() if log.exists() else ""):
        assert second.poll() is None, second.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (barrier / "release-1").write_text("")
    assert _finish(first)[0] == 0
    code, out, err = _finish(second)
    assert code == 0, err
    assert "skipped finished fold(s) 1" in out and "f1_macro (higher is better) by fold" in out
    assert log.read_text().count("done in") == 3


def test_kill_9_mid_fold_leaves_no_stale_lock_and_resumes_to_the_same_bytes(ws, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    (barrier / "release-0").write_text("")
    victim = _start(ws, barrier=barrier)
    bf.wait_for(barrier / "started-1", process=victim)
    paths = ws.run("m")
    assert fold_holder(paths.dir, 1).pid == victim.pid
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert fold_holder(paths.dir, 1) is None  # the kernel released the lock with the process
    assert paths.fold_done(0).is_file() and not paths.fold_done(1).exists()
    code, out, err = _train(ws)  # no barrier: runs straight through
    assert code == 0, err
    assert "skipped finished fold(s) 0" in out
    train(ws, ws.configs_dir / "m.yaml", n_folds=3, name="ref")
    np.testing.assert_array_equal(load_run(ws, "m").oof, load_run(ws, "ref").oof)
    np.testing.assert_array_equal(load_run(ws, "m").test, load_run(ws, "ref").test)


def test_workers_started_together_train_each_fold_once(ws):
    workers = [_start(ws) for _ in range(3)]
    results = [_finish(w) for w in workers]
    assert all(code == 0 for code, _, _ in results), [err for _, _, err in results]
    paths = ws.run("m")
    assert paths.log.read_text().count("done in") == 3
    assert paths.oof.is_file() and len(load_run(ws, "m").ids) == 120


def test_fold_lock_probe_and_owner(tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "runs" / "x"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from comp.locks import FoldLock; lock = FoldLock(sys.argv[1], 2); "
            "assert lock.acquire(0); print('held', flush=True); sys.stdin.read()",
            str(run_dir),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=bf.REPO,
        env=bf.comp_env(),
    )
    assert holder.stdout.readline().strip() == "held"
    try:
        owner = fold_holder(run_dir, 2)
        assert owner.pid == holder.pid and "since" in owner.describe()
        assert set(busy_folds(run_dir, range(4))) == {2}
        assert not FoldLock(run_dir, 2).acquire(0)
        with run_lock(run_dir):  # the run lock is another lock
            pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert fold_holder(run_dir, 2) is None
    lock = FoldLock(run_dir, 2)
    assert lock.acquire(0)
    lock.release()
