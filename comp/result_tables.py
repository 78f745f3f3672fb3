"""What the commands print about submissions, the leaderboard, a scored file, a run's report and a
comparison of runs: each function takes a library result and prints it through comp.console."""

from __future__ import annotations

from comp import console
from comp.tables import metric_label


def submit_outcome(outcome) -> None:
    entry = outcome.entry
    console.echo(f"wrote {entry.file} ({outcome.rows} rows, sha256 {entry.sha256[:12]}), ledger #{entry.id}")
    if outcome.duplicate_of is not None:
        console.warn(f"identical to #{outcome.duplicate_of.id} ({outcome.duplicate_of.file}), uploaded before")
    if not outcome.uploaded:
        console.echo("dry run: not uploaded")
        return
    left = "" if outcome.left_today is None else f"; {outcome.left_today} submission(s) left today"
    console.echo(f'uploaded: ref {entry.ref}, "{entry.message}"{left}')
    console.echo("next: comp lb --wait")


def ledger(report) -> None:
    """comp.ledger.lb_report's entries: CV next to the public and private LB, one row per submission."""
    if not report.entries:
        console.echo("no submissions in the ledger yet: `comp submit RUN`")
        return
    console.table(
        "CV (tuned, honest) vs leaderboard (public, private); LB-CV = public - honest; times UTC",
        ["#", "time", "run", "CV metric", "tuned", "honest", "public", "LB-CV", "private", "status"],
        [
            (
                e.id,
                e.time[:16].replace("T", " "),
                e.run,
                metric_label(e.metric, e.higher_is_better),
                console.fmt(e.cv_tuned),
                console.fmt(e.cv_honest),
                console.fmt(e.public_score, 5),
                "-" if e.lb_minus_cv is None or not report.comparable(e) else f"{e.lb_minus_cv:+.5f}",
                console.fmt(e.private_score, 5),
                e.status,
            )
            for e in report.entries
        ],
        right=(0, 4, 5, 6, 7, 8),
    )
    other = sorted({e.metric for e in report.entries if not report.comparable(e)})
    if other:
        console.echo(
            f"CV in {', '.join(other)} is not the leaderboard's metric ({report.metric}): no LB-CV, "
            "and left out of the correlation"
        )


def lb_summary(report, top: int | None, timeout: float) -> None:
    """Everything `comp lb` prints after the ledger: reconciled uploads, Kaggle's errors, the CV-LB
    correlation, the top of the leaderboard and a submission still pending after --wait."""
    if report.reconciled:
        console.echo(f"settled {report.reconciled} interrupted upload(s) from Kaggle's list of submissions")
    for e in report.entries:
        if e.status == "error" and e.note:
            console.echo(f"#{e.id} was not scored by Kaggle: {e.note}")
    c = report.correlation
    if c is not None:
        console.echo(
            f"CV ({report.metric}) vs public LB over {c.n} submissions: Pearson r {console.fmt(c.pearson_honest, 3)} "
            "(honest), "
            f"{console.fmt(c.pearson_tuned, 3)} (tuned); Spearman rho {console.fmt(c.spearman_honest, 3)} (honest)"
        )
    if report.not_in_ledger:
        console.echo(f"{len(report.not_in_ledger)} Kaggle submission(s) are not in this ledger (made elsewhere)")
    if report.leaderboard is not None:
        console.table(
            f"leaderboard: top {top}",
            ["rank", "team", "score", "date"],
            [(r.rank, r.team_name, console.fmt(r.score, 5), r.date[:10]) for r in report.leaderboard],
            right=(0, 2),
        )
        mine = report.my_entry
        console.echo(
            f"your best: rank {mine.rank}, {console.fmt(mine.score, 5)} ({mine.team_name})"
            if mine
            else "you are not on the public leaderboard yet"
        )
    if report.waited_out is not None:
        console.warn(
            f"#{report.waited_out.id} is still pending after {timeout:.0f} s; run `comp lb --wait` again later"
        )


def evaluation(title: str, result) -> None:
    """comp.evaluate.evaluate_file's result: precision, recall and F1 per class, then the metric."""
    pc = result.per_class
    console.table(
        f"{title}: per class",
        ["class", "support", "predicted", "precision", "recall", "F1"],
        [
            (
                c,
                int(pc["support"][j]),
                int(pc["n_predicted"][j]),
                f"{pc['precision'][j]:.4f}",
                f"{pc['recall'][j]:.4f}",
                f"{pc['f1'][j]:.4f}",
            )
            for j, c in enumerate(result.classes)
        ],
        right=(1, 2, 3, 4, 5),
    )
    if result.note:
        console.echo(f"({result.note})")
    console.echo(f"{result.metric} = {result.score:.5f} over {result.rows} rows")


def run_report(run: str, rep, metric_direction: str) -> None:
    """comp.report.write_run_report's per-class table (default decision | tuned) and CV spread over folds."""
    t = rep.tables.per_class
    console.table(
        f"run {run}: per class ({'argmax' if rep.task == 'multiclass' else 'at 0.5'} | tuned)",
        ["class", "support", "threshold", "P", "R", "F1", "P tuned", "R tuned", "F1 tuned"],
        [
            (
                r["class"],
                int(r["support"]),
                f"{r['threshold']:.3f}",
                *(
                    f"{r[c]:.3f}"
                    for c in (
                        "precision_0.5",
                        "recall_0.5",
                        "f1_0.5",
                        "precision_tuned",
                        "recall_tuned",
                        "f1_tuned",
                    )
                ),
            )
            for _, r in t.iterrows()
        ],
        right=range(1, 9),
    )
    console.table(
        f"{rep.metric} ({metric_direction}) over folds",
        ["estimate", "mean", "std", "min", "max"],
        [
            (r["estimate"], *(console.fmt(r[c]) for c in ("mean", "std", "min", "max")))
            for _, r in rep.tables.spread.iterrows()
        ],
        right=range(1, 5),
    )


def comparison(result, method: str, metric_direction: str) -> None:
    """comp.report.write_comparison's tables: per-class F1, CV in one metric, notes, OOF correlation."""
    names = result.runs
    console.table(
        "per-class F1 (tuned)",
        ["class", "support", *names, "best"],
        [(r["class"], int(r["support"]), *(f"{r[n]:.3f}" for n in names), r["best"]) for _, r in result.f1.iterrows()],
        right=range(1, len(names) + 2),
    )
    console.table(
        f"CV ({result.metric}, {metric_direction})",
        ["run", "model", "at 0.5", "tuned", "honest"],
        [
            (
                r["run"],
                r["model"],
                console.fmt(r["at_0.5"]),
                console.fmt(r["tuned"]),
                console.fmt(r["honest"]),
            )
            for _, r in result.scores.iterrows()
        ],
        right=(2, 3, 4),
    )
    for note in result.notes:
        console.warn(note)
    console.table(
        f"OOF correlation ({method}, mean over classes)",
        ["run", *names],
        [(a, *(f"{result.correlation.loc[a, b]:.3f}" for b in names)) for a in names],
        right=range(1, len(names) + 1),
    )
