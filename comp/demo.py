"""`comp demo`: the whole loop on the built-in synthetic competition in a temporary workspace.

Each step is a command line run through the app (``comp`` below), so the demo shows exactly what a
user who types it sees.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from comp import console
from comp.synthetic import SyntheticCompetition

SLUG = "comp-demo-emotions"


def run_demo(keep: Path | None, comp: Callable[[Sequence[str]], object]) -> Path:
    """Build the example competition under ``keep`` (default: a new temp folder) and run the loop on
    it; ``comp(argv)`` runs one command line (the app with ``standalone_mode=False``, so a CompError
    reaches the caller)."""
    started = time.perf_counter()
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="comp-demo-"))
    source = root / "download"
    answers = SyntheticCompetition().write(source)["answers"]
    workspace = root / SLUG
    configs = workspace / "configs"

    def latest_submission() -> Path:
        return max((workspace / "submissions").glob("*.csv"), key=lambda p: p.stat().st_mtime_ns)

    def step(title: str, *argv: object, in_workspace: bool = True) -> None:
        console.out.rule(f"[bold]$ {title}")
        comp([*(["--workspace", str(workspace)] if in_workspace else []), *map(str, argv)])

    step(f"comp init {SLUG}", "init", SLUG, workspace, in_workspace=False)
    step("comp fetch --from download/", "fetch", "--from", source)
    step("comp info", "info")
    step("comp folds --folds 5", "folds", "--folds", 5)
    step("comp train configs/tfidf.yaml", "train", configs / "tfidf.yaml")
    step("comp train configs/nbsvm.yaml", "train", configs / "nbsvm.yaml")
    step(
        "comp ensemble tfidf nbsvm --name blend --method weighted",
        "ensemble",
        "tfidf",
        "nbsvm",
        "--name",
        "blend",
        "--method",
        "weighted",
    )
    step("comp thresholds blend", "thresholds", "blend")
    step("comp runs", "runs")
    for run in ("tfidf", "nbsvm", "blend"):
        console.out.rule(f"[bold]$ comp submit {run} --dry-run && comp evaluate ... --answers test_labels.csv")
        comp(["--workspace", str(workspace), "submit", run, "--dry-run"])
        comp(["--workspace", str(workspace), "evaluate", str(latest_submission()), "--answers", str(answers)])
    console.echo(f"\ndemo finished in {time.perf_counter() - started:.0f}s; workspace: {workspace}")
    console.echo(f"answer key of the synthetic test set: {answers}")
    return workspace
