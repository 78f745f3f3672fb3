"""`comp tune --show STUDY`: the trials table, the best trial, trials.csv and two PNG figures drawn
with Optuna's matplotlib plots (optimisation history, parameter importances)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comp.errors import RunError
from comp.locks import study_lock
from comp.tune import study as studies
from comp.workspace import Workspace


@dataclass
class StudyView:
    name: str
    identity: dict[str, Any]
    rows: list[dict[str, Any]]  # number, state, params, honest, tuned, seconds, run, note
    best: dict[str, Any] | None
    best_config: Path | None
    figures: list[Path] = field(default_factory=list)
    trials_csv: Path | None = None
    notes: list[str] = field(default_factory=list)


def _seconds(trial) -> float | None:
    if "seconds" in trial.user_attrs:
        return float(trial.user_attrs["seconds"])
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return None


def _note(trial) -> str:
    from optuna.trial import TrialState

    if trial.state == TrialState.PRUNED:
        steps = [s for s in trial.intermediate_values if s < 1_000_000]
        return f"pruned after {len(steps)} fold(s)"
    if trial.state == TrialState.FAIL:
        return str(trial.user_attrs.get(studies.FAILURE) or "failed")
    origin = trial.system_attrs.get("failed_trial")
    return f"retry of trial {origin}, in its run" if origin is not None else ""


def show_study(
    ws: Workspace, name: str, storage: str | None = None, retries: int = 1, figures: bool = True
) -> StudyView:
    import optuna

    from comp.tune.worker import Setup, write_best

    study_dir = ws.study_dir(name)
    identity = studies.read_identity(study_dir)
    if identity is None:
        known = sorted(p.parent.name for p in ws.runs_dir.glob("*/study.yaml")) if ws.runs_dir.is_dir() else []
        raise RunError(
            f"no study '{name}' in {ws.runs_dir}"
            + (
                f"; studies: {', '.join(known)}"
                if known
                else "; start one with `comp tune CONFIG --space SPACE.yaml --trials N`"
            )
        )
    if identity.get("storage") == "rdb" and storage is None:
        raise RunError(f"study '{name}' is stored in an RDB; pass the same --storage URL as its workers")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opt = optuna.load_study(study_name=name, storage=studies.open_storage(study_dir, storage))
    with study_lock(study_dir):
        failed = studies.fail_dead_trials(opt, study_dir, retries)
    view = StudyView(name, identity, [], None, None)
    if failed:
        view.notes.append(f"failed trial(s) {', '.join(map(str, failed))}: their worker died (queued again)")
    for t in opt.get_trials(deepcopy=False):
        view.rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "params": dict(t.params),
                "honest": t.value,
                "tuned": t.user_attrs.get("tuned"),
                "seconds": _seconds(t),
                "run": t.user_attrs.get(studies.RUN, ""),
                "note": _note(t),
            }
        )
    config_path = ws.root / identity["config_file"]
    setup = Setup(
        ws,
        name,
        study_dir,
        config_path,
        None,
        {},
        None,
        identity["n_folds"],
        identity["fold_seed"],
        identity["folds_subset"],
        identity,
    )
    view.best, view.best_config = write_best(setup, opt)
    view.trials_csv = _write_csv(opt, study_dir / "trials.csv")
    if figures:
        view.figures, notes = draw_figures(opt, study_dir / "figures", identity["metric"])
        view.notes += notes
    return view


def _write_csv(opt, path: Path) -> Path:
    from comp.atomic import write_csv

    frame = opt.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "duration"))
    write_csv(path, frame)
    return path


def draw_figures(opt, folder: Path, metric: str) -> tuple[list[Path], list[str]]:
    """history.png and importances.png; a figure that needs more trials is left out, with a note."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as oplt

    from comp.atomic import write_bytes

    complete = [t for t in opt.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    out, notes = [], []
    plots = [("history.png", oplt.plot_optimization_history, 1), ("importances.png", oplt.plot_param_importances, 2)]
    for file, plot, needed in plots:
        if len(complete) < needed or (file == "importances.png" and not complete[0].params):
            notes.append(f"{file}: needs {needed} complete trials with parameters")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                ax = plot(opt, target_name=f"honest {metric}")
            except (ValueError, RuntimeError) as exc:  # e.g. importances of parameters that never varied
                notes.append(f"{file}: not drawn ({str(exc).splitlines()[0][:120]})")
                continue
        fig = ax.figure
        fig.set_size_inches(8, 5)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        path = folder / file
        write_bytes(path, buf.getvalue())
        out.append(path)
    return out, notes
