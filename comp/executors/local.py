"""`--executor local`: tasks as subprocesses on this machine, a fixed number at a time.

Each slot is a worker (``--workers N``) or a group of GPUs (``--devices 0,1,2,3`` with
``--gpus-per-task G``: CUDA_VISIBLE_DEVICES of the task is its group). A CPU task's thread pools
(OpenMP, BLAS, joblib's processes) are capped at cores / slots, unless the environment already caps
them, so N tasks do not each take every core. A task's output goes to its own log; one that fails
is reported with the tail of that log, and the others go on. Ctrl-C stops every task (their locks
are freed by the kernel, their finished folds kept).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable

from comp.executors.options import LaunchOptions, Task, comp_command, log_tail

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "LOKY_MAX_CPU_COUNT")
_POLL_SECONDS = 0.2


def task_command(task: Task, options: LaunchOptions, command: list[str] | None = None) -> list[str]:
    """The argv of a task: comp itself, or torchrun with one process per GPU of the task."""
    if options.gpus_per_task > 1:
        import sys

        # --standalone: a rendezvous on a free local port, so tasks side by side never collide
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={options.gpus_per_task}",
            "-m",
            "comp",
            *task.argv,
        ]
    return [*(command or comp_command()), *task.argv]


def task_env(options: LaunchOptions, slot: int, slots: int) -> tuple[dict[str, str], str]:
    """The environment of a task in ``slot``, and where it runs (for the progress table)."""
    env = dict(os.environ)
    if options.devices:
        group = options.device_groups()[slot]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(group)
        where = f"cuda {','.join(group)}"
    else:
        where = "cpu"
    cores = max(1, (os.cpu_count() or 1) // slots)
    for name in _THREAD_VARIABLES:
        env.setdefault(name, str(cores))
    return env, where


def run_local(
    tasks: list[Task],
    options: LaunchOptions,
    *,
    command: list[str] | None = None,
    progress: Callable[[list[Task]], None] | None = None,
) -> list[Task]:
    slots = options.slots(len(tasks))
    free = list(range(slots))
    queue = list(tasks)
    running: dict[int, tuple[Task, subprocess.Popen, float, object]] = {}
    report = progress or (lambda tasks: None)
    try:
        while queue or running:
            while queue and free:
                task, slot = queue.pop(0), free.pop(0)
                env, task.where = task_env(options, slot, slots)
                task.log.parent.mkdir(parents=True, exist_ok=True)
                log = open(task.log, "w", encoding="utf-8")  # closed when the task ends
                process = subprocess.Popen(
                    task_command(task, options, command),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
                task.status = f"running (pid {process.pid})"
                running[slot] = (task, process, time.perf_counter(), log)
                report(tasks)
            time.sleep(_POLL_SECONDS)
            for slot, (task, process, started, log) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                log.close()
                task.seconds = time.perf_counter() - started
                task.status = "done" if code == 0 else f"failed (exit {code})"
                if code:
                    task.tail = log_tail(task.log)
                del running[slot]
                free.append(slot)
                report(tasks)
    except BaseException:
        for _task, process, _, _log in running.values():
            process.terminate()
        for task, process, _, log in running.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            task.status = "stopped"
        raise
    return tasks
