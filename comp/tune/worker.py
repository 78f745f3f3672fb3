"""One `comp tune` worker: under the study lock, fail dead workers' trials and ask for a trial; then
train it as an ordinary run on the subset of folds, reporting each fold to the pruner; tell the
study; repeat until the study has ``--trials`` trials. Any number of workers, on any machines that
share the workspace (and the storage), may run at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comp.config import build, parse_overrides, to_dict
from comp.errors import CompError, ConfigError
from comp.locks import WorkerLock, study_lock
from comp.tune import study as studies
from comp.tune.objective import TrialReporter
from comp.tune.space import load_space, resolved_raw
from comp.workspace import Workspace, check_folds

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")
MAX_FAILURES_IN_A_ROW = 3  # then the worker stops: the space or the data is broken, not one trial


@dataclass
class TuneResult:
    study: str
    trials_run: list[dict[str, Any]]  # this worker's trials: number, state, value, run
    best: dict[str, Any] | None  # number, value, params, run
    best_config: Path | None
    failed_dead: list[int] = field(default_factory=list)  # trials of dead workers failed by this one
    notes: list[str] = field(default_factory=list)


def default_study_name(config_path: Path) -> str:
    return f"{Path(config_path).stem}-tune"


def best_config_path(ws: Workspace, config_path: Path, study: str) -> Path:
    """configs/<name>-best.yaml: <name> is the config's stem for its default study, else the study's."""
    stem = Path(config_path).stem
    return ws.configs_dir / f"{stem if study == default_study_name(config_path) else study}-best.yaml"


def parse_subset(text: str | None, n_folds: int) -> list[int]:
    if text is None:
        return list(range(n_folds))
    try:
        folds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--folds-subset {text}: give fold numbers separated by commas, e.g. 0,1,2") from None
    bad = [k for k in folds if not 0 <= k < n_folds]
    if not folds or bad or len(set(folds)) != len(folds):
        raise ConfigError(f"--folds-subset {text}: give distinct folds in 0..{n_folds - 1}, e.g. 0,1")
    return folds


def make_sampler(name: str, seed: int):
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(name: str, startup: int, n_steps: int):
    import optuna

    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(n_steps, 1))
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)


def direction(metric: str) -> str:
    from comp.metrics import METRICS

    return "maximize" if METRICS[metric].greater_is_better else "minimize"


@dataclass
class Setup:
    """A checked study: what every worker of it needs."""

    ws: Workspace
    name: str
    dir: Path
    config_path: Path
    family: Any
    base: dict[str, Any]  # the config file with --set overrides (nested)
    space: Any
    n_folds: int
    fold_seed: int
    subset: list[int]
    identity: dict[str, Any]


def setup_study(
    ws: Workspace,
    config_path: Path,
    space_path: Path,
    *,
    study: str | None = None,
    n_folds: int | None = None,
    folds_subset: str | None = None,
    storage: str | None = None,
    overrides: list[str] | None = None,
) -> Setup:
    """Check the config, the space and the folds, and the study's identity (study.yaml)."""
    from comp.models import get_family, load_model_config, preflight
    from comp.train import check_seeds, task_info

    settings = ws.load_settings()
    settings.require_schema()
    config = load_model_config(config_path, overrides)
    family = get_family(config.model)
    task = task_info(settings)
    try:
        check_seeds(config)
        preflight(family, config, task)
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    base = parse_overrides(overrides)
    space = load_space(Path(space_path), family, Path(config_path), base, task)
    n_folds = check_folds(n_folds, settings)
    subset = parse_subset(folds_subset, n_folds)
    name = study or default_study_name(config_path)
    study_dir = ws.study_dir(name)
    identity = {
        "study": name,
        "config_file": ws.relative(Path(config_path)),
        "config": to_dict(config),
        "space": space.to_dict(),
        "space_file": ws.relative(Path(space_path)),
        "metric": settings.metric,
        "direction": direction(settings.metric),
        "n_folds": n_folds,
        "fold_seed": settings.seed,
        "folds_subset": subset,
        "storage": "journal" if storage in (None, "journal") else "rdb",
    }
    with study_lock(study_dir):
        identity = studies.check_identity(ws, study_dir, identity)
    return Setup(ws, name, study_dir, Path(config_path), family, base, space, n_folds, settings.seed, subset, identity)


def load_study(
    setup: Setup, storage_url: str | None, sampler: str = "tpe", pruner: str = "median", pruner_startup: int = 5
):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = studies.open_storage(setup.dir, storage_url)
    with study_lock(setup.dir):
        return optuna.create_study(
            study_name=setup.name,
            storage=storage,
            direction=setup.identity["direction"],
            load_if_exists=True,
            sampler=make_sampler(sampler, setup.fold_seed),
            pruner=make_pruner(pruner, pruner_startup, len(setup.subset)),
        )


def tune(
    ws: Workspace,
    config_path: Path,
    space_path: Path,
    *,
    trials: int,
    study: str | None = None,
    n_folds: int | None = None,
    folds_subset: str | None = None,
    storage: str | None = None,
    sampler: str = "tpe",
    pruner: str = "median",
    pruner_startup: int = 5,
    retries: int = 1,
    overrides: list[str] | None = None,
    echo: Callable[[str], None] | None = None,
) -> TuneResult:
    """Run one worker of the study until it has ``trials`` trials (see the module docstring)."""
    import optuna
    from optuna.trial import TrialState

    from comp.train import train

    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {sampler}: choose one of {', '.join(SAMPLERS)}")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner}: choose one of {', '.join(PRUNERS)}")
    if trials < 1:
        raise ConfigError(f"--trials {trials}: give 1 or more")
    say = echo or (lambda message: None)
    setup = setup_study(
        ws,
        config_path,
        space_path,
        study=study,
        n_folds=n_folds,
        folds_subset=folds_subset,
        storage=storage,
        overrides=overrides,
    )
    opt = load_study(setup, storage, sampler, pruner, pruner_startup)
    worker = WorkerLock(setup.dir)
    result = TuneResult(setup.name, [], None, None)
    in_a_row = 0
    try:
        while True:
            with study_lock(setup.dir):
                result.failed_dead += studies.fail_dead_trials(opt, setup.dir, retries, mine=worker.id)
                if studies.counted_trials(opt) >= trials and not studies.waiting_trials(opt):
                    break  # queued trials (enqueued, or retries of dead workers' trials) are run first
                opt.sampler = make_sampler(sampler, setup.fold_seed + len(opt.get_trials(deepcopy=False)))
                trial = opt.ask()
                values = setup.space.suggest(trial)
                run = trial.user_attrs.get(studies.RUN) or f"{setup.name}/trial-{trial.number}"
                trial.set_user_attr(studies.WORKER, worker.id)
                trial.set_user_attr(studies.RUN, run)
                if trial.user_attrs.get(studies.FAILURE):
                    trial.set_user_attr(studies.FAILURE, None)
            say(f"trial {trial.number} ({run}): " + ", ".join(f"{k}={_show(v)}" for k, v in values.items()))
            started = time.perf_counter()
            reporter = TrialReporter(trial, setup.subset)
            row = {"number": trial.number, "run": run, "params": values}
            try:
                config_file = _write_trial_config(setup, run, values)
                train(
                    ws,
                    config_file,
                    n_folds=setup.n_folds,
                    only_folds=setup.subset,
                    name=run,
                    on_fold=reporter.on_fold,
                    on_epoch=reporter.on_epoch,
                    echo=None,
                )
                scores = reporter.scores
                for key, value in (("at_0.5", scores.at_05), ("tuned", scores.tuned), ("honest", scores.honest)):
                    trial.set_user_attr(key, float(value))
                trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
                opt.tell(trial, float(scores.honest))
                row.update(state="complete", value=float(scores.honest))
                in_a_row = 0
            except optuna.TrialPruned:
                trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))
                opt.tell(trial, state=TrialState.PRUNED)
                row.update(state="pruned", value=None, folds=len(reporter.done))
                in_a_row = 0
            except (KeyboardInterrupt, SystemExit):
                trial.set_user_attr(studies.FAILURE, "interrupted")
                opt.tell(trial, state=TrialState.FAIL)
                raise
            except Exception as exc:  # a trial's error fails that trial; the study goes on
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                trial.set_user_attr(studies.FAILURE, message[:500])
                opt.tell(trial, state=TrialState.FAIL)
                row.update(state="failed", value=None, error=message)
                in_a_row += 1
                if in_a_row >= MAX_FAILURES_IN_A_ROW or isinstance(exc, ConfigError):
                    raise CompError(
                        f"trial {trial.number} of study '{setup.name}' failed: {message}"
                        + ("" if isinstance(exc, ConfigError) else f" ({in_a_row} trials in a row failed)")
                    ) from None
            result.trials_run.append(row)
            say(
                f"trial {trial.number}: {row['state']}"
                + (f", honest {setup.identity['metric']} {row['value']:.4f}" if row.get("value") is not None else "")
            )
    finally:
        worker.release()
    result.best, result.best_config = write_best(setup, opt)
    return result


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value) if not isinstance(value, str) else value


def _write_trial_config(setup: Setup, run: str, values: dict[str, Any]) -> Path:
    """runs/<study>/trial-<n>/config.yaml: the config a trial trains, checked like any config."""
    import yaml

    from comp.atomic import write_text

    raw = resolved_raw(setup.config_path, setup.base, values)
    config = build(setup.family.Config, raw, f"trial config of {run}")
    path = setup.ws.run(run).dir / "config.yaml"
    header = f"# {run}: {setup.identity['config_file']} with " + ", ".join(f"{k}={_show(v)}" for k, v in values.items())
    write_text(path, header + "\n" + yaml.safe_dump(to_dict(config), sort_keys=False))
    return path


def write_best(setup: Setup, opt) -> tuple[dict[str, Any] | None, Path | None]:
    """The best trial, and its resolved config written to configs/<name>-best.yaml."""
    import yaml

    from comp.atomic import write_text
    from comp.run_files import read_run_yaml

    try:
        best = opt.best_trial
    except ValueError:  # no complete trial yet
        return None, None
    run = best.user_attrs.get(studies.RUN, f"{setup.name}/trial-{best.number}")
    paths = setup.ws.run(run)
    try:
        config = read_run_yaml(paths).config
    except CompError:
        return None, None
    info = {"number": best.number, "value": best.value, "params": best.params, "run": run}
    path = best_config_path(setup.ws, setup.config_path, setup.name)
    subset = ",".join(map(str, setup.subset))
    header = (
        f"# best trial {best.number} of study {setup.name} ({run}): honest {setup.identity['metric']} "
        f"{best.value:.4f} on folds {subset} of {setup.n_folds}\n"
    )
    write_text(path, header + yaml.safe_dump(config, sort_keys=False))
    return info, path
