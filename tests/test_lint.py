"""The code style the project chose is enforced in CI, not only by whoever remembers to run ruff."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.is_file():
        return [str(exe)]
    if shutil.which("ruff"):
        return ["ruff"]
    pytest.skip("ruff is not installed (pip install -e .[dev])")


def test_ruff_check_is_clean():
    # lint rules, the import bans (TID253) and the line length (E501 at 120 characters) from pyproject.toml
    out = subprocess.run([*_ruff(), "check", "comp", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def test_ruff_format_is_clean():
    out = subprocess.run(
        [*_ruff(), "format", "--check", "comp", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:]
