"""A study on disk: its storage, its identity (study.yaml) and the trials of dead workers.

Storage: Optuna's journal file ``runs/<study>/study.journal`` by default, appended under a flock
(:class:`comp.locks.JournalLock`), so every process and machine that mounts the workspace can join;
or any Optuna RDB URL (``--storage postgresql://...``, ``sqlite:///...``) for clusters without a
shared file system that locks. Either way the trials' runs live in the workspace.

A worker killed with kill -9 leaves its trial RUNNING in the storage. Optuna 5's JournalStorage has
no heartbeat (only RDBStorage implements one, and it fails a trial only after a grace period), so
comp does what :mod:`comp.locks` describes for every storage: a trial is tagged with its worker,
whose lock the kernel frees when it dies; the next ask (or `comp tune --show`) fails the trial
and queues it again with Optuna's ``RetryHeartbeatStaleTrialCallback``, up to ``retries`` times.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

from comp.errors import CompError, ConfigError, RunError
from comp.locks import JournalLock, worker_alive
from comp.workspace import STUDY_YAML, Workspace

WORKER = "comp_worker"  # user attribute: the id of the worker that runs the trial
RUN = "comp_run"  # user attribute: the trial's run (a retry keeps its original's run folder)
FAILURE = "comp_failure"  # user attribute: why the trial failed ("worker died", or the error)
DEAD = "worker died"


def journal_path(study_dir: Path) -> Path:
    return Path(study_dir) / "study.journal"


def open_storage(study_dir: Path, url: str | None):
    """The Optuna storage of the study: the journal in its folder, or the RDB at ``url``."""
    import optuna

    if url is None or url == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = journal_path(study_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalLock(path)))
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # sqlalchemy's errors for a bad URL, a missing driver, a refused connection
        raise CompError(
            f"--storage {_redacted(url)}: cannot open it ({str(exc).splitlines()[0][:200]}); give an "
            "Optuna RDB URL such as sqlite:///study.db or postgresql://user@host/db"
        ) from None


def _redacted(url: str) -> str:
    """An RDB URL without its password."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}:***@{tail}" if ":" in credentials else url


def read_identity(study_dir: Path) -> dict[str, Any] | None:
    import yaml

    path = Path(study_dir) / STUDY_YAML
    if not path.is_file():
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RunError(
            f"{path} is damaged ({str(exc).splitlines()[0]}); move the study folder aside to start anew"
        ) from None
    if not isinstance(raw, dict):
        raise RunError(f"{path} is damaged (not a mapping); move the study folder aside to start anew")
    return raw


_SAME = ("config", "space", "metric", "direction", "n_folds", "fold_seed", "folds_subset", "storage")


def check_identity(ws: Workspace, study_dir: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """Under the study lock: the study's study.yaml, written when new; a worker whose config, space,
    folds, metric or storage differ from the study's is refused by name."""
    from comp.atomic import write_yaml

    name = Path(study_dir).name
    if (Path(study_dir) / "run.yaml").is_file():
        raise ConfigError(f"runs/{name} is a run, not a study; pass --study NAME to name the study")
    existing = read_identity(study_dir)
    if existing is None:
        write_yaml(Path(study_dir) / STUDY_YAML, identity)
        return identity
    changed = [k for k in _SAME if existing.get(k) != identity.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {_short(existing.get(k))} -> {_short(identity.get(k))}" for k in changed[:2])
        raise RunError(
            f"study '{name}' exists with another {', '.join(changed)} ({detail}); pass --study NEW to start "
            "another study, or join this one with its settings"
        )
    return existing


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fail_dead_trials(study, study_dir: Path, retries: int, mine: str | None = None) -> list[int]:
    """Under the study lock: fail the RUNNING trials whose worker died and queue them again (at most
    ``retries`` times per original trial). Returns the numbers of the trials failed."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    failed = []
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER)
        if worker == mine or (worker and worker_alive(study_dir, worker)):
            continue
        # untagged: its worker died between ask and tag, which happen under the study lock
        original = copy.deepcopy(trial)
        storage.set_trial_user_attr(trial._trial_id, FAILURE, DEAD)
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        failed.append(trial.number)
        if retries > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the callback is marked experimental
                RetryHeartbeatStaleTrialCallback(max_retry=retries)(study, original)
    return failed


def counted_trials(study) -> int:
    """Trials that count toward ``--trials``: finished (complete, pruned, failed by an error), running
    or queued. A trial whose worker died does not count: its queued retry does."""
    from optuna.trial import TrialState

    n = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
            n += 1
        elif trial.state == TrialState.FAIL and trial.user_attrs.get(FAILURE) != DEAD:
            n += 1
    return n


def waiting_trials(study) -> int:
    """Queued trials: enqueued by hand, or retries of dead workers' trials."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
