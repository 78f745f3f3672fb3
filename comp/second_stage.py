"""Training from a teacher run: fold-safe pseudo-labels and distillation (``pseudo_labels:``, ``distill:``).

Fold-safety is the whole point. A student's OOF on fold k is honest only if nothing fold k's labels
shaped reaches the student's fold-k model. A teacher's **fold-k model** never saw fold k, so:

- **pseudo-labels**: for fold k the student also trains on test rows (and rows of an extra unlabelled
  CSV) labelled by the teacher's fold-k model: its fold-k test predictions, stored by the fold loop as
  ``fold-<k>/test.npy`` (the mean of its seeds), and for the extra CSV its saved fold-k model;
- **distillation, mode fold_safe**: the soft targets of fold k's training rows are the teacher's fold-k
  model's predictions on those rows (it trained on them: in-sample, more confident than its OOF, but
  free of fold k). They need the teacher's saved fold models (``save_models: true``);
- **distillation, mode oof**: the teacher's OOF as soft targets. Row i's OOF came from a teacher model
  trained on every fold but fold(i), fold k included, so fold k's labels leak into the student's fold-k
  model: the run's CV is marked ``cv_optimistic`` (run.yaml, scores.json, `comp runs`, the report).

Targets: ``alpha * soften(teacher, T) + (1 - alpha) * labels`` for distillation (cross-entropy is
linear in its target, so this is alpha times the soft loss plus (1 - alpha) times the hard one);
pseudo rows get the teacher's probabilities (soft) or its 0.5 / argmax decisions (hard) and a
``sample_weight``. The teacher's identity (digest, folds, data and a hash of the outputs used) is
recorded in the student's run.yaml and its digest, so a retrained teacher makes the student stale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from comp.decision import default_labels
from comp.errors import CompError, ConfigError, RunError
from comp.models.base import TaskInfo
from comp.record import FoldsRecord, RunRecord, SecondStageRecord, TeacherRecord
from comp.teachers import data_id, outputs_hash
from comp.workspace import RunPaths, Workspace

# probabilities are clipped this far from 0 and 1 before a temperature takes their logarithm
_EPS = 1e-6


# ---- the pure part: targets from teacher probabilities --------------------------------------------


def soften(P: np.ndarray, task: str, temperature: float) -> np.ndarray:
    """Teacher probabilities (n, k) at ``temperature``: log p / T renormalised (softmax rows for
    multiclass; per class over {p, 1 - p}, i.e. sigmoid(logit(p) / T), for multilabel and binary)."""
    P = np.asarray(P, dtype=np.float64)
    if temperature == 1.0:
        return P
    P = np.clip(P, _EPS, 1 - _EPS)
    if task == "multiclass":
        z = np.log(P) / temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-np.log(P / (1 - P)) / temperature))


def confidence(P: np.ndarray, task: str) -> np.ndarray:
    """A row's confidence (n,): its top probability (multiclass); the least decided class's
    max(p, 1 - p) otherwise (every class of the row must be confident)."""
    P = np.asarray(P, dtype=np.float64)
    if task == "multiclass":
        return P.max(axis=1)
    return np.maximum(P, 1 - P).min(axis=1)


def hard_labels(P: np.ndarray, task: str) -> np.ndarray:
    """The teacher's decisions as indicators: argmax (multiclass), p >= 0.5 otherwise. Its tuned
    thresholds are not used: they were fitted on the OOF of every fold, fold k included."""
    return default_labels(np.asarray(P, dtype=np.float64), task).astype(np.float64)


def pseudo_targets(P: np.ndarray, task: str, mode: str, min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows mask (n,), targets (n_kept, k)) of teacher probabilities ``P`` (n, k)."""
    keep = confidence(P, task) >= min_confidence
    targets = hard_labels(P[keep], task) if mode == "hard" else np.asarray(P[keep], dtype=np.float64)
    return keep, targets


# ---- the teacher -------------------------------------------------------------------------------


@dataclass
class Teacher:
    """A finished run a student learns from, checked (:func:`load_teacher`)."""

    key: str  # pseudo_labels | distill
    name: str
    record: RunRecord
    paths: RunPaths
    oof: np.ndarray  # (n_train, n_outputs), train order
    n_folds: int

    @property
    def optimistic(self) -> str | None:
        """Why this run's own CV is optimistic, or None."""
        return self.record.optimistic_reason

    def identity(self) -> dict[str, Any]:
        """What the student's run.yaml records of this teacher (comp.record.TeacherRecord's fields)."""
        return {
            "run": self.name,
            "digest": self.record.digest,
            "folds": {"file": self.record.folds.file, "hash": self.record.folds.hash},
            "data": data_id(self.record.data),
            "outputs": outputs_hash(self.paths),
        }

    def fold_test(self, k: int) -> np.ndarray:
        """The teacher's fold-k model's test probabilities (n_test, n_outputs): its seeds' mean."""
        return np.load(self.paths.fold_test(k))


def load_teacher(
    ws: Workspace,
    key: str,
    name: str,
    student: str,
    classes: list[str],
    fold_record: FoldsRecord,
    train_ids: list[str],
    *,
    per_fold: bool,
    saved_models: str | None,
) -> Teacher:
    """Run ``name`` as the teacher of ``key``, refused in one line when it cannot be a fold-safe one:
    this run itself, missing, unfinished, trained on other data, classes or folds, an ensemble (no
    fold models) where ``per_fold`` predictions are needed, or without saved fold models where
    ``saved_models`` says what needs them."""
    from comp.predict import missing_saved_models
    from comp.runs import load_run

    where = f"{key}.run"
    if name == student:
        raise ConfigError(f"{where}: '{name}' is this run itself; name another run as the teacher")
    try:
        run = load_run(ws, name, classes, check=True)
    except CompError as exc:
        raise ConfigError(f"{where}: teacher {exc}") from None
    record = run.record
    paths = ws.run(name)
    theirs = record.folds
    if not theirs.same_file(fold_record):
        raise ConfigError(
            f"{where}: teacher run '{name}' was trained on {theirs.file} (hash {theirs.hash[:8]}), "
            f"not on this run's {fold_record.file} (hash {fold_record.hash[:8]}): its fold models saw other rows; "
            f"train the student with the teacher's --folds/--seed, or retrain the teacher on these folds"
        )
    if run.ids != list(train_ids):
        raise ConfigError(f"{where}: teacher run '{name}' has other train ids than data/train.csv; retrain it")
    n_folds = theirs.n_folds
    if per_fold:
        if record.is_ensemble:
            raise ConfigError(
                f"{where}: teacher run '{name}' is an ensemble: it has no fold models, so no fold-safe predictions; "
                "name one of its members (or, for distill, use mode: oof and accept an optimistic CV)"
            )
        missing = [k for k in range(n_folds) if not paths.fold_test(k).is_file()]
        if missing:
            raise ConfigError(
                f"{where}: teacher run '{name}' has no fold test predictions for fold(s) "
                f"{', '.join(map(str, missing))} (fold-<k>/test.npy); retrain it with `comp train`"
            )
    if saved_models:
        missing = list(range(n_folds)) if record.is_ensemble else missing_saved_models(paths, record)
        if missing or not n_folds:
            raise ConfigError(
                f"{where}: {saved_models} needs the saved fold models of teacher run '{name}', and fold(s) "
                f"{', '.join(map(str, missing or ['all']))} have none; retrain the teacher with save_models: true "
                f"(`comp train {record.config_file or 'CONFIG'} --set save_models=true --force`)"
            )
    return Teacher(key, name, record, paths, run.oof, n_folds)


# ---- a student's second stage --------------------------------------------------------------------


@dataclass
class FoldRows:
    """What a student's fold trains on: its training rows (soft targets with distillation), then the
    pseudo-labelled rows. ``sample_weight`` is None when every row weighs 1."""

    texts: list[str]
    Y: np.ndarray  # (n_rows, n_outputs)
    sample_weight: np.ndarray | None
    facts: dict[str, Any]  # counts for done.json and the log


@dataclass
class SecondStage:
    """The teachers of one student run and the rows they give each fold (:func:`prepare`)."""

    ws: Workspace
    task: TaskInfo
    pseudo: Any  # comp.config.PseudoLabels or None
    distill: Any  # comp.config.Distill or None
    pseudo_teacher: Teacher | None
    distill_teacher: Teacher | None
    test_texts: list[str]
    extra: tuple[list[str], list[str]] | None  # (ids, texts) of the extra CSV
    record: SecondStageRecord  # run.yaml's `second_stage`
    optimistic: str | None  # why the student's CV is optimistic, or None
    _cache: dict = field(default_factory=dict)

    def check_unchanged(self, student: str) -> None:
        """Refuse to go on when a teacher was retrained since the student's run.yaml was written."""
        for teacher in (self.pseudo_teacher, self.distill_teacher):
            if teacher is not None and outputs_hash(teacher.paths) != self.record.teachers()[teacher.key].outputs:
                raise RunError(
                    f"teacher run '{teacher.name}' of run '{student}' ({teacher.key}) changed while the student "
                    f"was training; retrain the student with --force once the teacher is finished"
                )

    def _fold_model(
        self, teacher: Teacher, k: int, what: str, texts: list[str], log: Callable[[str], None]
    ) -> np.ndarray:
        from comp.predict import fold_proba

        key = (teacher.name, k, what)
        if key not in self._cache:  # a student with several seeds asks once per seed
            log(f"fold {k}: teacher '{teacher.name}' fold-{k} model predicts {len(texts)} {what} rows")
            self._cache[key] = fold_proba(self.ws, teacher.name, teacher.record, k, texts, self.task)
        return self._cache[key]

    def fold_rows(
        self,
        k: int,
        train_rows: np.ndarray,
        texts: list[str],
        Y: np.ndarray,
        log: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> FoldRows:
        """Fold k's training texts and targets: ``train_rows`` of the train ``texts`` / labels ``Y``,
        distilled and extended with pseudo rows, each from the teacher's fold-k model (or its OOF)."""
        task = self.task.task
        fit_texts = [texts[i] for i in train_rows]
        targets = np.asarray(Y[train_rows], dtype=np.float64)
        weights = [np.ones(len(train_rows))]
        facts: dict[str, Any] = {}
        if self.distill is not None:
            d, teacher = self.distill, self.distill_teacher
            if d.mode == "oof":
                q = teacher.oof[train_rows]
            else:
                q = self._fold_model(teacher, k, "training", fit_texts, log)
            targets = d.alpha * soften(q, task, d.temperature) + (1 - d.alpha) * targets
            facts["distilled_rows"] = len(train_rows)
            log(
                f"fold {k}: {len(train_rows)} training rows distilled from teacher '{teacher.name}' "
                f"({d.mode}, alpha {d.alpha:g}, temperature {d.temperature:g})"
            )
        if self.pseudo is not None:
            p, teacher = self.pseudo, self.pseudo_teacher
            sources: list[tuple[str, list[str], np.ndarray]] = []
            if p.test:
                sources.append(("test", self.test_texts, teacher.fold_test(k)))
            if self.extra is not None:
                sources.append(("extra", self.extra[1], self._fold_model(teacher, k, "extra", self.extra[1], log)))
            counts, dropped = {}, 0
            all_texts, all_targets = [], []
            for name, source_texts, P in sources:
                keep, rows_targets = pseudo_targets(P, task, p.mode, p.min_confidence)
                all_texts += [t for t, kept in zip(source_texts, keep, strict=True) if kept]
                all_targets.append(rows_targets)
                counts[name] = int(keep.sum())
                dropped += int((~keep).sum())
            n_pseudo = sum(counts.values())
            fit_texts = fit_texts + all_texts
            targets = np.concatenate([targets, *all_targets]) if all_targets else targets
            weights.append(np.full(n_pseudo, float(p.weight)))
            facts.update({"pseudo_rows": n_pseudo, "pseudo_dropped": dropped})
            shown = ", ".join(f"{name} {n}" for name, n in counts.items())
            log(
                f"fold {k}: + {n_pseudo} pseudo-labelled rows ({shown}) from teacher '{teacher.name}' fold-{k} model, "
                f"{p.mode}, weight {p.weight:g}"
                + (f"; {dropped} below min_confidence {p.min_confidence:g} left out" if dropped else "")
            )
            if n_pseudo == 0:
                warn(f"fold {k}: no pseudo row reaches min_confidence {p.min_confidence:g}; lower it")
        sample_weight = np.concatenate(weights)
        return FoldRows(fit_texts, targets, None if np.all(sample_weight == 1.0) else sample_weight, facts)


def prepare(
    ws: Workspace, config, task: TaskInfo, fold_record: FoldsRecord, student: str, family, comp
) -> SecondStage | None:
    """The student's teachers, checked, and what run.yaml records of them; None without
    ``pseudo_labels`` / ``distill``. Raises ConfigError (one line) for an impossible combination."""
    import inspect

    pseudo, distill = getattr(config, "pseudo_labels", None), getattr(config, "distill", None)
    if pseudo is None and distill is None:
        return None
    if "sample_weight" not in inspect.signature(family.Model.fit).parameters:
        raise ConfigError(
            f"model '{config.model}' cannot train on weighted soft targets (its Model.fit takes no "
            "sample_weight), so it cannot use pseudo_labels or distill"
        )
    record = SecondStageRecord()
    reasons: list[str] = []
    pseudo_teacher = distill_teacher = None
    extra = None
    if pseudo is not None:
        if pseudo.extra:
            extra, extra_entry = _read_extra(ws, pseudo.extra)
        pseudo_teacher = load_teacher(
            ws,
            "pseudo_labels",
            pseudo.run,
            student,
            task.classes,
            fold_record,
            comp.train_ids,
            per_fold=True,
            saved_models="labelling the extra CSV" if pseudo.extra else None,
        )
        entry = {
            **pseudo_teacher.identity(),
            "mode": pseudo.mode,
            "weight": pseudo.weight,
            "min_confidence": pseudo.min_confidence,
            "test": pseudo.test,
        }
        if pseudo.extra:
            entry["extra"] = extra_entry
        record.pseudo_labels = TeacherRecord(**entry)
        if pseudo_teacher.optimistic:
            reasons.append(
                f"its pseudo-label teacher '{pseudo.run}' has an optimistic CV ({pseudo_teacher.optimistic})"
            )
    if distill is not None:
        fold_safe = distill.mode == "fold_safe"
        distill_teacher = load_teacher(
            ws,
            "distill",
            distill.run,
            student,
            task.classes,
            fold_record,
            comp.train_ids,
            per_fold=fold_safe,
            saved_models="distill mode fold_safe (the teacher's fold-k model predicts fold k's training rows; "
            "or use mode: oof, whose CV is optimistic)"
            if fold_safe
            else None,
        )
        record.distill = TeacherRecord(
            **distill_teacher.identity(), mode=distill.mode, alpha=distill.alpha, temperature=distill.temperature
        )
        if not fold_safe:
            reasons.append(
                f"distilled from the OOF predictions of teacher '{distill.run}', which carry every fold's labels"
            )
        if distill_teacher.optimistic:
            reasons.append(f"its distill teacher '{distill.run}' has an optimistic CV ({distill_teacher.optimistic})")
    return SecondStage(
        ws,
        task,
        pseudo,
        distill,
        pseudo_teacher,
        distill_teacher,
        list(comp.test_texts),
        extra,
        record,
        "; ".join(dict.fromkeys(reasons)) or None,
    )


def _read_extra(ws: Workspace, relative: str) -> tuple[tuple[list[str], list[str]], dict[str, Any]]:
    from comp.data import read_texts
    from comp.digest import sha256_file

    path = ws.root / relative
    if not path.is_file():
        raise ConfigError(
            f"pseudo_labels.extra: {relative} not found in the workspace; put the unlabelled CSV "
            f"there (columns of test.csv) or drop extra"
        )
    settings = ws.load_settings()
    try:
        ids, texts = read_texts(path, settings)
    except CompError as exc:
        raise ConfigError(f"pseudo_labels.extra: {exc}") from None
    return (ids, texts), {"file": relative, "hash": sha256_file(path), "rows": len(ids)}
