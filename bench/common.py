"""Helpers shared by the benchmark scripts: shared data paths, workspaces, and docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COMP_SHARED_DATA", ROOT.parent / "shared" / "data"))
WORK = ROOT / "bench" / "work"
DOC = ROOT / "docs" / "benchmarks.md"


def dataset(name: str) -> Path | None:
    """A shared dataset folder, or None (the caller skips) when it is not there."""
    path = SHARED_DATA / name
    return path if (path / "train.csv").is_file() else None


def machine() -> str:
    return f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}"


def write_section(key: str, text: str) -> None:
    """Replace (or append) the section between <!-- bench:KEY --> markers in docs/benchmarks.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    doc = (
        DOC.read_text(encoding="utf-8")
        if DOC.exists()
        else "# Benchmarks\n\nFigures written by the scripts in bench/.\n"
    )
    block = f"<!-- bench:{key} -->\n{text.strip()}\n<!-- /bench:{key} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(key)} -->.*?<!-- /bench:{re.escape(key)} -->", re.S)
    doc = pattern.sub(lambda _: block, doc) if pattern.search(doc) else doc.rstrip() + "\n\n" + block + "\n"
    from comp.atomic import write_text

    write_text(DOC, doc)
