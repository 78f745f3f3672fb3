"""`--executor slurm`: the tasks as one submitit job array; logs in ``runs/<run>/slurm/``.

Each array element runs one task's comp command line in a subprocess (torchrun with
``--gpus-per-task G > 1``). :class:`CompTask` is a submitit ``Checkpointable``: when Slurm preempts
the job or its time runs out, submitit calls its ``checkpoint``, which stops the comp process
(its fold lock is freed with it) and has the same task requeued; the requeued task skips the
finished folds and resumes a fold from its checkpoints (``checkpoint_every`` in the transformer
family). ``--slurm-cluster local|debug`` uses submitit's local executors, which run the same job
array on this machine (as submitit's own tests do).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from comp.errors import CompError
from comp.executors.local import task_command
from comp.executors.options import LaunchOptions, Task, comp_command, log_tail

_POLL_SECONDS = 1.0
_STOP_SECONDS = 30  # after SIGTERM, before SIGKILL


def _die_with_parent() -> None:
    """In the comp subprocess: be killed if the job's process dies (Linux), so no orphan keeps a lock."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(pid: int) -> None:
    """SIGTERM, then SIGKILL after ``_STOP_SECONDS``. Reaped with waitpid directly: this runs in a
    signal handler that interrupted ``Popen.wait``, which holds the Popen's own wait lock."""
    import os

    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_SECONDS
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass  # already gone


def _submitit():
    try:
        import submitit
    except ImportError:
        raise CompError("--executor slurm needs submitit: pip install submitit") from None
    return submitit


class CompTask:
    """Run one comp command line inside a Slurm (or submitit local) job; requeued on preemption."""

    def __init__(self, argv: list[str]):
        self.argv = list(argv)
        self._process: subprocess.Popen | None = None

    def __call__(self) -> int:
        self._process = subprocess.Popen(self.argv, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        code = self._process.wait()
        self._process = None
        if code != 0:
            raise RuntimeError(f"`{' '.join(self.argv[-12:])}` exited with {code}")
        return code

    def checkpoint(self, *args, **kwargs):
        """Preempted or timed out: stop the comp process, then requeue this task as it was."""
        process = self._process
        if process is not None:
            _stop(process.pid)
        return _submitit().helpers.DelayedSubmission(CompTask(self.argv))

    def __getstate__(self) -> dict:
        return {"argv": self.argv}

    def __setstate__(self, state: dict) -> None:
        self.argv, self._process = state["argv"], None


def make_executor(options: LaunchOptions, folder: Path, n_tasks: int):
    submitit = _submitit()
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=folder, cluster=options.slurm_cluster)
    params = {"name": f"comp-{folder.parent.name}"}
    if options.slurm_time_min is not None:
        params["timeout_min"] = options.slurm_time_min
    if options.slurm_cluster == "slurm":
        gpus = (
            options.slurm_gpus_per_task
            if options.slurm_gpus_per_task is not None
            else (options.gpus_per_task if options.gpus_per_task > 1 else None)
        )
        params.update({"slurm_array_parallelism": options.max_parallel or n_tasks})
        if options.slurm_partition:
            params["slurm_partition"] = options.slurm_partition
        if gpus:
            params["slurm_gpus_per_task"] = gpus
    executor.update_parameters(**params)
    return executor


def submit(tasks: list[Task], options: LaunchOptions, folder: Path, command: list[str] | None = None) -> list:
    """Submit ``tasks`` as one job array; the jobs, in task order."""
    executor = make_executor(options, folder, len(tasks))
    callables = [CompTask(task_command(task, options, command or comp_command())) for task in tasks]
    with executor.batch():
        jobs = [executor.submit(c) for c in callables]
    for task, job in zip(tasks, jobs, strict=True):
        task.where = f"job {job.job_id}"
        task.log = Path(job.paths.stderr)
        task.status = "submitted"
    return jobs


def _job_tail(job) -> str:
    """The end of a job's logs (submitit writes stdout and stderr apart)."""
    parts = [log_tail(Path(p), n) for p, n in ((job.paths.stderr, 15), (job.paths.stdout, 5)) if Path(p).is_file()]
    return "\n".join(parts) or "(no log)"


def run_slurm(
    tasks: list[Task],
    options: LaunchOptions,
    folder: Path,
    *,
    command: list[str] | None = None,
    progress: Callable[[list[Task]], None] | None = None,
) -> list[Task]:
    """Submit the tasks and follow them until every one has ended."""
    report = progress or (lambda tasks: None)
    jobs = submit(tasks, options, folder, command)
    report(tasks)
    started = time.perf_counter()
    while True:
        changed = False
        for task, job in zip(tasks, jobs, strict=True):
            if task.status in ("done",) or task.failed:
                continue
            try:
                # the debug executor runs the task here, inside done(), and raises its error there
                if job.done():
                    job.result()
                    task.status, task.seconds, changed = "done", time.perf_counter() - started, True
                    continue
            except Exception as exc:  # submitit re-raises the task's error, or that it was killed
                message = str(exc).strip().splitlines()[-1][:160] if str(exc).strip() else type(exc).__name__
                task.status, task.seconds, changed = f"failed ({message})", time.perf_counter() - started, True
                task.tail = _job_tail(job)
                continue
            else:
                state = str(job.state).lower()
                if task.status != state:
                    task.status, changed = state, True
        if changed:
            report(tasks)
        if all(t.status == "done" or t.failed for t in tasks):
            return tasks
        time.sleep(_POLL_SECONDS)
