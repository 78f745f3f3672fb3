"""`comp demo`: the whole loop on the built-in synthetic competition in a temporary workspace.

It calls the same command functions a user types, in order, so the demo shows exactly their output.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from comp import console
from comp.synthetic import SyntheticCompetition

SLUG = "comp-demo-emotions"


def run_demo(keep: Path | None = None) -> Path:
    from comp import cli

    started = time.perf_counter()
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="comp-demo-"))
    source = root / "download"
    answers = SyntheticCompetition().write(source)["answers"]
    workspace = root / SLUG
    configs = workspace / "configs"

    def latest_submission() -> Path:
        return max((workspace / "submissions").glob("*.csv"), key=lambda p: p.stat().st_mtime_ns)

    steps = [
        (f"comp init {SLUG}", lambda: cli.init(SLUG, workspace)),
        ("comp fetch --from download/", lambda: cli.fetch(None, from_=source)),
        ("comp info", lambda: cli.info()),
        ("comp folds --folds 5", lambda: cli.folds(n_folds=5)),
        ("comp train configs/tfidf.yaml", lambda: cli.train(configs / "tfidf.yaml")),
        ("comp train configs/nbsvm.yaml", lambda: cli.train(configs / "nbsvm.yaml")),
        ("comp ensemble tfidf nbsvm --name blend --method weighted",
         lambda: cli.ensemble(["tfidf", "nbsvm"], name="blend", method="weighted")),
        ("comp thresholds blend", lambda: cli.thresholds("blend")),
        ("comp runs", lambda: cli.runs()),
    ]
    cli.STATE.workspace = workspace
    for title, step in steps:
        console.out.rule(f"[bold]$ {title}")
        step()
    for run in ("tfidf", "nbsvm", "blend"):
        console.out.rule(f"[bold]$ comp submit {run} --dry-run && comp evaluate ... --answers test_labels.csv")
        cli.submit(run, message=None, dry_run=True, force=False)
        cli.evaluate(latest_submission(), answers=answers, metric=None)
    console.echo(f"\ndemo finished in {time.perf_counter() - started:.0f}s; workspace: {workspace}")
    console.echo(f"answer key of the synthetic test set: {answers}")
    return workspace
