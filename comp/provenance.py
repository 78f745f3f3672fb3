"""What produced a run: package versions, the git commit, and the timestamps of run.yaml."""

from __future__ import annotations

import subprocess
import time
from importlib import metadata
from pathlib import Path

_VERSIONED = ("comp", "numpy", "pandas", "scikit-learn", "torch", "transformers", "peft", "bitsandbytes", "accelerate")


def package_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def now() -> str:
    """Local time to the second, as run.yaml, done.json and train.log write it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")
