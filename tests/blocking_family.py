"""A model family for the concurrency tests: the tfidf family, whose ``fit`` can be held at a barrier.

With ``COMP_TEST_BARRIER=DIR`` in the environment, fitting fold k creates ``DIR/started-<k>`` and then
waits until ``DIR/release-<k>`` exists, so a test decides exactly when a fold (in another process)
is "in training": it can start a second worker meanwhile, or kill -9 the first. A run of several
seeds uses ``<k>.<s>`` for seed s of fold k (``release-<k>`` releases all its seeds).
``COMP_TEST_FAIL_FOLD=k`` makes fitting fold k raise. Registered only by
:func:`comp_command`, which runs the real `comp` command line in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from comp.models import tfidf

REPO = Path(__file__).resolve().parents[1]
preflight = tfidf.preflight


@dataclass
class Config(tfidf.Config):
    model: str = "blocking"


class Model(tfidf.Model):
    def fit(self, texts, Y, valid=None):
        fold = self.context.fold
        if os.environ.get("COMP_TEST_FAIL_FOLD") == str(fold):
            raise RuntimeError(f"injected failure in fold {fold}")
        barrier = os.environ.get("COMP_TEST_BARRIER")
        if barrier:
            where = self.context.fold_dir.name
            tag = f"{fold}.{where.split('-')[1]}" if where.startswith("seed-") else str(fold)
            Path(barrier, f"started-{tag}").write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not (Path(barrier, f"release-{tag}").exists() or Path(barrier, f"release-{fold}").exists()):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fold {fold} was never released")
                time.sleep(0.02)
        return super().fit(texts, Y, valid)


_MAIN = (
    "import sys, comp.models; comp.models.FAMILIES['blocking'] = 'tests.blocking_family'; "
    "from comp.cli import main; sys.argv = ['comp', *sys.argv[1:]]; main()"
)


COMMAND = [sys.executable, "-c", _MAIN]  # a `comp` that knows ``blocking``, for an executor's tasks


def comp_command(*args) -> list[str]:
    """argv of a `comp` subprocess that also knows the ``blocking`` family."""
    return [sys.executable, "-c", _MAIN, *map(str, args)]


def comp_env(barrier: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if barrier is not None:
        env["COMP_TEST_BARRIER"] = str(barrier)
    return env


def start(*args, barrier: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        comp_command(*args), env=comp_env(barrier), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run(*args, barrier: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        comp_command(*args), env=comp_env(barrier), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def wait_for(path: Path, timeout: float = 120, process: subprocess.Popen | None = None) -> None:
    """Until ``path`` exists (a fold started); fails early if ``process`` died instead."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process is not None and process.poll() is not None:
            raise AssertionError(
                f"the process exited ({process.returncode}) before {path.name}: "
                f"{process.stderr.read() if process.stderr else ''}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)
