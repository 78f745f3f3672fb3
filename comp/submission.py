"""Probabilities + thresholds -> a DataFrame shaped exactly like sample_submission, and its validation.

The submission has sample_submission's columns in its order and its ids in its order, with values of
the kind the competition scores:

- ``indicator``: one 0/1 integer column per class (multilabel, or a multiclass sample with a column
  per class);
- ``class``: one column holding a class value as train spells it (binary and multiclass);
- ``proba``: probabilities (``submission_format: probabilities``), one column per class, or the
  positive class's for a binary task.

Validation checks the text that is written (what Kaggle reads), not the frame, so a value pandas
would write differently from what was meant cannot slip through. `submit_run` at the bottom is the
thin effectful part: it reads the run, writes the file, uploads it and records it in the ledger.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from comp.errors import ConfigError, DataError, KaggleError, RunError
from comp.workspace import CompSettings, Workspace

if TYPE_CHECKING:
    import pandas as pd

    from comp.ledger import LedgerEntry

_EXAMPLES = 5


# ---- layout ------------------------------------------------------------------------------------


def layout(settings: CompSettings) -> str:
    """How predictions map onto sample_submission's label columns: indicator | class | proba."""
    settings.require_schema()
    columns, names = list(settings.label_columns), settings.output_names
    single = len(columns) == 1 and settings.task in ("binary", "multiclass")
    if settings.submission_format == "probabilities":
        if settings.task == "binary" and len(columns) == 1:
            return "proba"
        if single:
            raise ConfigError(
                f"comp.yaml: submission_format is probabilities but sample_submission has the single label "
                f"column '{columns[0]}' for {len(names)} classes; set submission_format: labels"
            )
    elif single:
        return "class"
    if sorted(columns) != sorted(names):
        raise ConfigError(
            f"comp.yaml: label_columns ({', '.join(columns)}) do not match the classes "
            f"({', '.join(names)}); each label column must name one class"
        )
    return "proba" if settings.submission_format == "probabilities" else "indicator"


def threshold_vector(thresholds: dict[str, Any] | None, settings: CompSettings,
                     source: str = "thresholds.json", run: str = "RUN") -> tuple[np.ndarray, int]:
    """Thresholds (offsets for multiclass) in class order, and min_labels, from a run's thresholds.json.

    A missing file, or a class without a tuned threshold (NaN: thresholds fitted for a probability
    metric), is refused rather than replaced by 0.5: the run's CV was measured with tuned thresholds.
    """
    names = settings.output_names
    if not thresholds:
        raise RunError(f"{source} is missing, so the labels cannot be decided as the run's CV was measured; "
                       f"re-fit it with `comp thresholds {run}`")
    if thresholds.get("task", settings.task) != settings.task:
        raise RunError(
            f"{source} was fitted for a {thresholds.get('task')} task, comp.yaml says {settings.task}; "
            f"re-fit them with `comp thresholds {run}`"
        )
    from comp.evaluation import threshold_values

    t = threshold_values(thresholds, names)
    if np.isnan(t).any():
        missing = [c for c, v in zip(names, t, strict=True) if np.isnan(v)]
        raise RunError(
            f"{source} has no tuned threshold for class(es) {', '.join(missing[:5])} (fitted for metric "
            f"{thresholds.get('metric')}, which scores probabilities); re-fit them for the competition's metric "
            f"with `comp thresholds {run} --metric {settings.metric}`"
        )
    return t, int(thresholds.get("min_labels", settings.min_labels) or 0)


def value_kind_problems(settings: CompSettings, sample: pd.DataFrame) -> list[str]:
    """Why the value kind that will be submitted (labels or probabilities) does not fit the metric or
    sample_submission.csv; empty when it fits. Kaggle marks a file of the wrong kind as an ERROR (or
    scores it meaninglessly), and the daily submission is gone either way."""
    import pandas as pd

    from comp.metrics import METRICS

    kind = "probabilities" if layout(settings) == "proba" else "labels"
    problems = []
    metric = METRICS[settings.metric]
    wanted = "probabilities" if metric.needs_proba else "labels"
    if kind != wanted:
        problems.append(
            f"metric {settings.metric} scores {wanted} but submission_format is {settings.submission_format or 'labels'}, "
            f"so the file would hold {kind}; set submission_format: {wanted} in comp.yaml"
        )
    values = sample[list(settings.label_columns)].astype(str).apply(lambda c: c.str.strip()).to_numpy().ravel()
    values = pd.Series([v for v in values if v])
    if len(values):
        numbers = pd.to_numeric(values, errors="coerce")
        fractional = bool(numbers.notna().all() and (numbers != numbers.round()).any())
        labels_like = bool(numbers.isna().any() or (numbers.notna().all() and numbers.nunique() > 1
                                                     and set(numbers.unique()) <= {0, 1}))
        shown = ", ".join(dict.fromkeys(values.head(50)))[:60]
        if kind == "labels" and fractional:
            problems.append(f"sample_submission.csv holds probabilities ({shown}) but the file would hold labels; "
                            "set submission_format: probabilities in comp.yaml")
        if kind == "probabilities" and labels_like:
            problems.append(f"sample_submission.csv holds labels ({shown}) but the file would hold probabilities; "
                            "set submission_format: labels in comp.yaml")
    return problems


# ---- building ----------------------------------------------------------------------------------


def build_submission(
    test_ids: list[str],
    P: np.ndarray,
    settings: CompSettings,
    sample: pd.DataFrame,
    thresholds: np.ndarray | None = None,
    min_labels: int | None = None,
) -> pd.DataFrame:
    """The submission frame for test probabilities ``P`` (n_test, n_outputs), rows in ``test_ids`` order.

    Columns and ids (as strings, leading zeros kept) follow ``sample``; thresholds (n_outputs,) default
    to 0.5 (multiclass: offsets of 0, i.e. argmax).
    """
    import pandas as pd

    kind = layout(settings)
    names = settings.output_names
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape != (len(test_ids), len(names)):
        raise RunError(
            f"test probabilities have shape {P.shape}, expected ({len(test_ids)}, {len(names)}) for the "
            f"test ids and classes of comp.yaml; retrain the run"
        )
    id_column = settings.id_column
    sample_ids = sample[id_column].astype(str).tolist()
    order = _align(list(map(str, test_ids)), sample_ids)
    P = P[order]
    frame = pd.DataFrame({id_column: pd.Series(sample_ids, dtype="str")})
    if kind == "proba":
        if settings.task == "binary":
            frame[settings.label_columns[0]] = P[:, 0]
        else:
            for j, name in enumerate(names):
                frame[name] = P[:, j]
    else:
        if thresholds is None:
            thresholds = np.full(len(names), 0.0 if settings.task == "multiclass" else 0.5)
        from comp.thresholds import apply_thresholds

        labels = apply_thresholds(P, thresholds, settings.task, settings.min_labels if min_labels is None else min_labels)
        if kind == "indicator":
            for j, name in enumerate(names):
                frame[name] = labels[:, j].astype(np.int64)
        else:
            code = labels[:, 0] if settings.task == "binary" else np.argmax(labels, axis=1)
            frame[settings.label_columns[0]] = _class_values(settings.classes, code)
    unknown = [c for c in sample.columns if c not in frame.columns]
    if unknown:
        raise ConfigError(
            f"sample_submission.csv has column(s) {', '.join(unknown)} that comp.yaml's id_column and "
            "label_columns do not name; add them to label_columns or fix the file"
        )
    return frame[list(sample.columns)]


def _align(test_ids: list[str], sample_ids: list[str]) -> np.ndarray:
    """Indices that put rows in ``test_ids`` order into ``sample_ids`` order."""
    index = {v: i for i, v in enumerate(test_ids)}
    if len(index) != len(test_ids):
        dup = sorted(v for v, n in Counter(test_ids).items() if n > 1)
        raise RunError(f"the run's test probabilities repeat ids {_examples(dup)}; retrain the run")
    missing = [v for v in sample_ids if v not in index]
    extra = sorted(set(test_ids) - set(sample_ids))
    if missing or extra:
        raise RunError(
            f"the run's test ids differ from sample_submission.csv's ({len(missing)} missing: "
            f"{_examples(missing)}; {len(extra)} not in the sample: {_examples(extra)}); "
            "retrain the run on the current data/"
        )
    return np.array([index[v] for v in sample_ids], dtype=np.int64)


def _class_values(classes: list[Any], code: np.ndarray):
    """Class values as train spells them: an int column when every class is an int, else strings."""
    import pandas as pd

    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return np.asarray(classes, dtype=np.int64)[code]
    return pd.Series([str(classes[i]) for i in code], dtype="str")


def submission_text(frame: pd.DataFrame) -> str:
    """The exact CSV text written for ``frame`` (UTF-8, no index, floats in shortest round-trip form)."""
    return frame.to_csv(index=False, lineterminator="\n")


# ---- validation --------------------------------------------------------------------------------


def parse_submission(text: str) -> pd.DataFrame:
    """Read submission CSV text as strings, as `comp.data.read_csv` reads the competition files."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise DataError(f"the submission is not a valid CSV ({detail})") from None
    return frame


def check_submission(frame: pd.DataFrame, sample: pd.DataFrame, settings: CompSettings,
                     reference: str = "sample_submission.csv") -> list[str]:
    """Every problem of ``frame`` (strings, as read from the CSV) against ``sample`` (named ``reference``
    in messages) and comp.yaml; an empty list when it is valid."""
    problems: list[str] = []
    columns, expected = list(frame.columns), list(sample.columns)
    if columns != expected:
        missing = [c for c in expected if c not in columns]
        extra = [c for c in columns if c not in expected]
        if missing or extra:
            problems.append(
                f"columns differ from {reference}'s (missing: {', '.join(missing) or 'none'}; "
                f"unexpected: {', '.join(extra) or 'none'})"
            )
        else:
            problems.append(f"columns are in the order {', '.join(columns)}; {reference} has {', '.join(expected)}")
        return problems
    id_column = settings.id_column
    if len(frame) != len(sample):
        problems.append(f"{len(frame)} rows, {reference} has {len(sample)}")
    ids, sample_ids = frame[id_column].tolist(), sample[id_column].tolist()
    if ids != sample_ids:
        problems.append(_id_problem(ids, sample_ids, id_column, reference))
    blank = frame.apply(lambda s: s.str.strip() == "")
    for column in frame.columns:
        rows = np.flatnonzero(blank[column].to_numpy())
        if rows.size:
            problems.append(f"column '{column}' is empty on {_where(frame, rows, id_column)}")
    allowed_desc, ok = _allowed(settings)
    for column in settings.label_columns:
        values = frame[column].str.strip()
        bad = np.flatnonzero(~ok(values).to_numpy() & ~blank[column].to_numpy())
        if bad.size:
            shown = _examples([repr(v) for v in dict.fromkeys(values.iloc[bad])])
            problems.append(f"column '{column}' has values other than {allowed_desc} ({shown}) on {_where(frame, bad, id_column)}")
    return problems


def validate_submission(frame: pd.DataFrame, sample: pd.DataFrame, settings: CompSettings) -> str:
    """Raise DataError naming the rows and columns at fault; return the CSV text that was checked."""
    text = submission_text(frame)
    problems = check_submission(parse_submission(text), sample, settings)
    if problems:
        raise DataError(f"the submission is invalid, nothing was written or uploaded: {'; '.join(problems)}")
    return text


def validate_file(path: str | Path, sample: pd.DataFrame, settings: CompSettings) -> None:
    """Validate a submission CSV on disk (what Kaggle would read)."""
    from comp.data import read_csv

    problems = check_submission(read_csv(path), sample, settings)
    if problems:
        raise DataError(f"{Path(path).name} is invalid: {'; '.join(problems)}")


def _allowed(settings: CompSettings):
    import pandas as pd

    kind = layout(settings)
    if kind == "proba":
        def ok(values):
            numbers = pd.to_numeric(values, errors="coerce")
            return numbers.notna() & (numbers >= 0) & (numbers <= 1)

        return "probabilities in [0, 1]", ok
    allowed = ["0", "1"] if kind == "indicator" else [str(c) for c in settings.classes]
    return _examples(allowed, 10), lambda values: values.isin(allowed)


def _id_problem(ids: list[str], sample_ids: list[str], id_column: str, reference: str) -> str:
    seen, dup = set(), []
    for v in ids:
        if v in seen:
            dup.append(v)
        seen.add(v)
    if dup:
        return f"'{id_column}' repeats ids {_examples(list(dict.fromkeys(dup)))}"
    expected = set(sample_ids)
    missing = [v for v in sample_ids if v not in seen]
    extra = [v for v in ids if v not in expected]
    if missing or extra:
        return (
            f"'{id_column}' differs from {reference}'s: {len(missing)} id(s) missing "
            f"({_examples(missing)}), {len(extra)} unknown ({_examples(extra)})"
        )
    first = next(i for i, (a, b) in enumerate(zip(ids, sample_ids, strict=True)) if a != b)
    return (
        f"ids are not in {reference}'s order: line {first + 2} has '{ids[first]}', "
        f"{reference} has '{sample_ids[first]}'"
    )


def _where(frame: pd.DataFrame, rows: np.ndarray, id_column: str) -> str:
    lines = _examples((rows + 2).tolist())  # +2: the header and 1-based lines
    return f"{rows.size} line(s): {lines} (ids {_examples(frame[id_column].iloc[rows].tolist())})"


def _examples(values, limit: int = _EXAMPLES) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


# ---- comp submit -------------------------------------------------------------------------------


@dataclass
class SubmitOutcome:
    entry: LedgerEntry
    path: Path
    rows: int
    uploaded: bool
    kaggle_message: str = ""
    left_today: int | None = None
    duplicate_of: LedgerEntry | None = None  # a dry run of a file already uploaded


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def default_message(run: str, scores: dict[str, Any]) -> str:
    cv = scores.get("cv") or {}
    parts = [f"{name} {cv[key]:.4f}" for name, key in (("tuned", "tuned"), ("honest", "honest"))
             if isinstance(cv.get(key), int | float)]
    return f"{run}: CV {scores.get('metric', '')} {', '.join(parts)}".strip() if parts else run


def submit_run(ws: Workspace, run: str, message: str | None = None, dry_run: bool = False,
               force: bool = False) -> SubmitOutcome:
    """Build and validate RUN's submission, write it, upload it (unless ``dry_run``) and log it.

    Before anything is written: the run's data is the workspace's (comp.runs.load_run), its files are
    sound, the value kind fits the metric and sample_submission.csv (``force`` overrides), and Kaggle
    has a submission left today. The ledger row is written as ``uploading`` before the upload, under
    a lock on the file, and updated after it; a crash in between is reconciled with Kaggle's list of
    submissions by the next `comp submit` or `comp lb` (:func:`comp.ledger.reconcile`).
    """
    from comp import kaggle_client
    from comp.atomic import write_bytes
    from comp.data import read_csv
    from comp.ledger import Ledger, LedgerEntry, utc_now
    from comp.locks import upload_lock
    from comp.runs import load_run

    settings = ws.load_settings()
    settings.require_schema()
    data = load_run(ws, run, settings.output_names)
    sample = read_csv(ws.sample_submission_csv)
    problems = [] if force else value_kind_problems(settings, sample)
    if problems:
        raise ConfigError(f"the submission would hold the wrong kind of values, nothing was written or uploaded: "
                          f"{'; '.join(problems)} (or pass --force to submit it anyway)")
    if layout(settings) == "proba":
        thresholds, min_labels = None, settings.min_labels
    else:
        thresholds, min_labels = threshold_vector(data.thresholds, settings, ws.relative(ws.run(run).thresholds), run)
    frame = build_submission(data.test_ids, data.test, settings, sample, thresholds, min_labels)
    payload = validate_submission(frame, sample, settings).encode("utf-8")
    digest = file_sha256(payload)
    slug = settings.competition
    if not dry_run and not slug:
        raise ConfigError("comp.yaml has no competition slug; set competition: SLUG to upload (or pass --dry-run)")
    limits = None if dry_run else _limits(slug)
    if limits is not None:
        _refuse_when_none_left(limits, slug)
    metric, higher = score_metric(data.scores)

    with Ledger(ws.ledger_path) as ledger:
        if not dry_run and ledger.entries_with_status("uploading"):
            _reconcile(ws, ledger, slug)
        previous = ledger.uploaded_with_hash(digest)
        if previous is not None and not dry_run and not force:
            raise KaggleError(
                f"this submission is identical to #{previous.id} ({previous.file}, uploaded {previous.time[:16]}, "
                f"ref {previous.ref}); nothing was uploaded. Pass --force to upload it again"
            )
        unsure = [e for e in ledger.entries_with_status("uploading") if e.sha256 == digest]
        if unsure and not dry_run and not force:
            raise KaggleError(
                f"this submission is identical to #{unsure[0].id} ({unsure[0].file}), whose upload was interrupted and "
                "which Kaggle's list cannot confirm yet; run `comp lb` to check, or pass --force to upload it again"
            )
        path = _new_path(ws, run)
        cv = data.scores.get("cv") or {}
        entry = LedgerEntry(
            id=None, time=utc_now(), run=run, file=Path(ws.relative(path)).as_posix(), sha256=digest,
            message=message or default_message(run, data.scores), metric=metric,
            cv_tuned=_number(cv.get("tuned")), cv_honest=_number(cv.get("honest")), ref=None,
            status="dry-run" if dry_run else "uploading", public_score=None, private_score=None, note=None,
            higher_is_better=higher,
        )
        lock = None if dry_run else upload_lock(ws.submissions_dir, path.name)
        if lock is not None:
            lock.acquire()
        try:
            write_bytes(path, payload)
            try:
                entry = ledger.add(entry)
            except BaseException:
                path.unlink(missing_ok=True)  # no CSV without its ledger row
                raise
            outcome = SubmitOutcome(entry, path, len(frame), uploaded=False, duplicate_of=previous)
            if dry_run:
                return outcome
            try:
                result = kaggle_client.submit(slug, path, entry.message)
            except KaggleError as exc:
                ledger.update(entry.id, status="not uploaded", note=str(exc))
                raise KaggleError(
                    f"{exc} ({entry.file} was written and logged as ledger #{entry.id}, not uploaded)"
                ) from None
            outcome.entry = ledger.update(entry.id, ref=result.ref, status="pending", note=None)
        finally:
            if lock is not None:
                lock.release()
    outcome.uploaded, outcome.kaggle_message = True, result.message
    try:
        after = kaggle_client.submission_limits(slug)
    except KaggleError:
        after = None  # the upload succeeded; the count is only a courtesy
    if after is not None:
        outcome.left_today = max(0, after.num_allowed_now)
    elif limits is not None and (limits.num_today or limits.num_allowed_now):
        outcome.left_today = max(0, limits.num_allowed_now - 1)
    return outcome


def score_metric(scores: dict[str, Any]) -> tuple[str | None, bool | None]:
    """The metric of a run's scores.json and whether higher is better (its own field, else the metric's)."""
    from comp.metrics import METRICS

    metric = scores.get("metric")
    if not isinstance(metric, str):
        return None, None
    for key in ("greater_is_better", "higher_is_better"):
        if isinstance(scores.get(key), bool):
            return metric, scores[key]
    if scores.get("direction") in ("higher", "lower"):
        return metric, scores["direction"] == "higher"
    return metric, METRICS[metric].greater_is_better if metric in METRICS else None


def _limits(slug: str):
    from comp import kaggle_client

    try:
        return kaggle_client.submission_limits(slug)
    except KaggleError:
        return None  # the upload itself reports what is wrong (credentials, network) and logs it


def _refuse_when_none_left(limits, slug: str) -> None:
    """Kaggle's allowance is spent: upload nothing, and say when it comes back (00:00 UTC)."""
    from datetime import UTC, datetime, timedelta

    if limits.num_allowed_now > 0 or not (limits.num_today or limits.limited_by_total):
        return  # something left, or all zero: the team does not exist yet (its first submission makes it)
    if limits.limited_by_total:
        raise KaggleError(
            f"no submissions left for '{slug}': the competition's total allowance is used ({limits.num_total} made); "
            "nothing was written or uploaded"
        )
    now = datetime.now(UTC)
    reset = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = int((reset - now).total_seconds() // 60)
    raise KaggleError(
        f"no submissions left today for '{slug}' ({limits.num_today} made today); Kaggle resets the allowance at "
        f"00:00 UTC, in {minutes // 60} h {minutes % 60:02d} min. Nothing was written or uploaded "
        "(--dry-run writes and logs the file without uploading)"
    )


def _reconcile(ws: Workspace, ledger, slug: str) -> None:
    """Settle rows left ``uploading`` by a crash, from Kaggle's list (see comp.ledger.reconcile)."""
    from comp import kaggle_client
    from comp.ledger import reconcile
    from comp.locks import upload_in_progress

    try:
        kaggle = kaggle_client.list_submissions(slug)
    except KaggleError:
        return  # the duplicate check below refuses to upload an unconfirmed file again
    reconcile(ledger, kaggle, lambda entry: upload_in_progress(ws.submissions_dir, Path(entry.file).name))


def _new_path(ws: Workspace, run: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, k = ws.submission_csv(run, stamp), 2
    while path.exists():  # two submissions in one second
        path, k = ws.submission_csv(run, f"{stamp}_{k}"), k + 1
    return path


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
