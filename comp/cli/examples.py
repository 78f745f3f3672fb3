"""`comp demo`: the whole loop on the built-in example, each step run through this same app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    ctx: typer.Context,
    keep: Annotated[
        Path | None, typer.Option("--keep", help="Build the demo workspace here instead of a temp folder.")
    ] = None,
) -> None:
    """Run the whole loop on a built-in synthetic competition in a fresh temporary workspace."""
    from comp.demo import run_demo

    # the root command parses each step's argv as `comp ARGS` would, with a context of its own
    root = ctx.find_root().command
    run_demo(keep, lambda argv: root.main(list(argv), prog_name="comp", standalone_mode=False))
