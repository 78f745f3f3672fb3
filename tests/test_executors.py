"""`comp train ... --executor local|slurm`: tasks as real subprocesses (or a submitit job array on
submitit's local executor), the shared-workspace protocol of comp.locks deciding who trains what."""

import json
import os
import shutil
import signal
import sys

import psutil
import pytest

from comp.errors import CompError, ConfigError
from comp.executors import Task, fan_out_train, launch_options
from comp.executors.local import task_command, task_env
from comp.models import FAMILIES
from comp.runs import load_run
from comp.train import train
from tests import blocking_family as bf
from tests.helpers import make_workspace

BLOCKING = "model: blocking\nword_ngrams: [1, 2]\nchar_ngrams: null\nmin_df: 1\nC: 2.0\nn_jobs: 1\n"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("executors"), train_rows=150, test_rows=50)
    (ws.configs_dir / "m.yaml").write_text(BLOCKING)
    return ws


def test_two_local_workers_give_the_bytes_of_the_sequential_run(ws):
    """Folds and seeds fanned out over 2 workers: the (fold, seed) tasks are the sequential run's."""
    config = ws.configs_dir / "tfidf.yaml"
    args = (
        "--workspace",
        ws.root,
        "train",
        config,
        "--folds",
        2,
        "--seeds",
        2,
        "--name",
        "parallel",
        "--executor",
        "local",
        "--workers",
        2,
    )
    done = bf.run(*args)
    assert done.returncode == 0, done.stderr
    assert "f1_macro (higher is better) by fold" in done.stdout and "2 seeds: honest f1_macro per seed" in done.stdout
    tasks = [(k, s) for k in range(2) for s in range(2)]
    assert all(f"fold {k} seed {s}: done" in done.stderr for k, s in tasks)  # the progress lines
    paths = ws.run("parallel")
    assert sorted(p.name for p in paths.tasks_dir.iterdir()) == [f"fold-{k}-seed-{s}.log" for k, s in tasks]
    pids = {json.loads((paths.seed_dir(k, s) / "done.json").read_text())["pid"] for k, s in tasks}
    assert len(pids) == 4  # one process per task
    train(ws, config, n_folds=2, seeds=2, name="sequential")
    assert paths.oof.read_bytes() == ws.run("sequential").oof.read_bytes()
    assert paths.test.read_bytes() == ws.run("sequential").test.read_bytes()
    again = bf.run(*args)  # everything is done: running it again starts nothing
    assert again.returncode == 0 and "skipped finished fold(s) 0, 1" in again.stdout


def test_a_failing_task_is_reported_the_others_finish_and_a_rerun_trains_what_is_missing(ws, monkeypatch):
    monkeypatch.setitem(FAMILIES, "blocking", "tests.blocking_family")
    monkeypatch.setenv("COMP_TEST_FAIL_FOLD", "1")
    monkeypatch.setenv("PYTHONPATH", str(bf.REPO))
    options = launch_options("local", workers=2)
    outcome = fan_out_train(ws, ws.configs_dir / "m.yaml", options, n_folds=3, name="flaky", command=bf.COMMAND)
    assert [t.key for t in outcome.failed] == ["fold 1"]
    [failed] = outcome.failed
    assert failed.status == "failed (exit 1)" and "injected failure in fold 1" in failed.tail
    assert [t.status for t in outcome.tasks if not t.failed] == ["done", "done"]
    assert outcome.result.pending == [1] and outcome.result.scores is None
    paths = ws.run("flaky")
    assert paths.fold_done(0).is_file() and paths.fold_done(2).is_file() and not paths.oof.exists()
    monkeypatch.delenv("COMP_TEST_FAIL_FOLD")
    again = fan_out_train(ws, ws.configs_dir / "m.yaml", options, n_folds=3, name="flaky", command=bf.COMMAND)
    assert [t.key for t in again.tasks] == ["fold 1"] and not again.failed
    assert again.result.scores is not None and again.result.skipped == [0, 2]
    assert len(load_run(ws, "flaky").ids) == 150


def test_the_submitit_job_array_runs_on_submitits_local_executor(ws):
    config = ws.configs_dir / "tfidf.yaml"
    done = bf.run(
        "--workspace",
        ws.root,
        "train",
        config,
        "--folds",
        2,
        "--name",
        "array",
        "--executor",
        "slurm",
        "--slurm-cluster",
        "local",
        "--slurm-time",
        "10",
    )
    assert done.returncode == 0, done.stderr
    paths = ws.run("array")
    assert paths.oof.is_file() and any(paths.slurm_dir.glob("*_log.err"))
    train(ws, config, n_folds=2, name="array-reference")
    assert paths.oof.read_bytes() == ws.run("array-reference").oof.read_bytes()


def test_a_preempted_slurm_task_is_requeued_and_resumes(ws, tmp_path, monkeypatch):
    """The job gets Slurm's preemption signal mid-fold: its comp process is stopped (its fold lock freed
    with it), the task is requeued and trains the fold again; what was done is kept."""
    from comp.executors.slurm import submit

    monkeypatch.setenv("COMP_TEST_BARRIER", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(bf.REPO))
    argv = ["--workspace", str(ws.root), "train", str(ws.configs_dir / "m.yaml"), "--folds", "2", "--name", "preempted"]
    task = Task("whole run", argv, tmp_path / "log")
    [job] = submit([task], launch_options("slurm", slurm_cluster="local"), ws.run("preempted").slurm_dir, bf.COMMAND)
    (tmp_path / "release-1").write_text("")
    bf.wait_for(tmp_path / "started-0")
    comp_pid = int((tmp_path / "started-0").read_text())
    (tmp_path / "started-0").unlink()
    # the signal Slurm sends a job before preempting it, to the job's process (the comp task's parent)
    os.kill(psutil.Process(comp_pid).ppid(), signal.SIGUSR2)
    bf.wait_for(tmp_path / "started-0")  # the requeued task is back in fold 0
    assert int((tmp_path / "started-0").read_text()) != comp_pid
    assert not psutil.pid_exists(comp_pid) or psutil.Process(comp_pid).status() == psutil.STATUS_ZOMBIE
    (tmp_path / "release-0").write_text("")
    assert job.result() == 0
    logs = job.stdout() + job.stderr()  # submitit logs to stdout, comp to stderr
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs
    assert load_run(ws, "preempted").oof.shape == (150, 6)


def test_launch_options_are_checked_before_anything_starts():
    with pytest.raises(ConfigError, match="--devices 0,1,2: 3 GPUs do not split into groups of --gpus-per-task 2"):
        launch_options("local", devices="0,1,2", gpus_per_task=2)
    with pytest.raises(ConfigError, match="--workers and --devices are for --executor local"):
        launch_options("slurm", workers=2)
    with pytest.raises(ConfigError, match="--slurm-time soon: give minutes"):
        launch_options("slurm", slurm_time="soon", slurm_cluster="local")
    assert launch_options("slurm", slurm_time="01:30:00", slurm_cluster="local").slurm_time_min == 90
    assert launch_options("slurm", slurm_time="1-00:00", slurm_cluster="local").slurm_time_min == 24 * 60
    if shutil.which("sbatch") is None:  # before anything is written: no run.yaml of a run that cannot start
        with pytest.raises(CompError, match="sbatch not found on this machine: --executor slurm submits with sbatch"):
            launch_options("slurm")


def test_devices_pin_each_task_and_gpus_per_task_launch_torchrun():
    options = launch_options("local", devices="0,1,2,3", gpus_per_task=2)
    assert options.slots(10) == 2
    env, where = task_env(options, 1, 2)
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and where == "cuda 2,3"
    argv = task_command(Task("fold 0", ["train", "c.yaml", "--fold", "0"], None), options)
    assert argv[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert argv[5:] == ["-m", "comp", "train", "c.yaml", "--fold", "0"]
    env, _ = task_env(launch_options("local", workers=2), 0, 2)
    assert env.get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
