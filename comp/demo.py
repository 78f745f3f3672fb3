"""`comp demo`: the whole loop on the built-in synthetic competition in a temporary workspace."""

from __future__ import annotations

import tempfile
from pathlib import Path

from comp import console
from comp.synthetic import SyntheticCompetition

SLUG = "comp-demo-emotions"


def run_demo(keep: Path | None = None) -> Path:
    from comp import cli

    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="comp-demo-"))
    source = root / "download"
    answers = SyntheticCompetition().write(source)["answers"]
    workspace = root / SLUG
    steps = [
        (f"comp init {SLUG}", lambda: cli.init(SLUG, workspace)),
        ("comp fetch --from download/", lambda: cli.fetch(None, from_=source)),
        ("comp info", lambda: cli.info()),
        ("comp folds", lambda: cli.folds()),
    ]
    cli.STATE.workspace = workspace
    for title, step in steps:
        console.out.rule(f"[bold]$ {title}")
        step()
    console.echo(f"\ndemo workspace: {workspace} (answer key: {answers})")
    return workspace
