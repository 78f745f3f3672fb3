"""A run's train.log, and which process of a multi-GPU launch writes files."""

from __future__ import annotations

import os
from pathlib import Path

from comp.atomic import append_text
from comp.provenance import now


class RunLog:
    """Appends timestamped lines to runs/<run>/train.log and echoes them to stderr."""

    def __init__(self, path: Path | None, echo=None, enabled: bool = True):
        self.path = path
        self.echo = echo
        self.enabled = enabled
        self.warnings: list[str] = []

    def __call__(self, message: str, echo: bool = True) -> None:
        if not self.enabled:
            return
        if self.path is not None:
            append_text(self.path, f"{now()} {message}\n")
        if echo and self.echo is not None:
            self.echo(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self(f"warning: {message}")


def is_main_process() -> bool:
    """False on the non-zero ranks of `torchrun` / `accelerate launch`: only rank 0 writes files."""
    return int(os.environ.get("RANK", "0")) == 0
