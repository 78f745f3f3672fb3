"""bench/gpu_check.py runs nowhere in CI with a GPU: check that it exits cleanly without one and that
every section runs end to end on tiny shapes on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO / "bench", env=env, capture_output=True, text=True, timeout=900
    )


def test_without_cuda_it_says_so_and_exits_0():
    done = _run()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no CUDA GPU here, nothing measured" in done.stdout


def test_every_section_runs_on_tiny_shapes_on_cpu():
    pytest.importorskip("peft")
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    done = _run("--cpu-smoke")
    assert done.returncode == 0, done.stderr[-3000:]
    for section in ("encoder", "adapters", "llm", "fsdp"):
        assert f"gpu_check: {section} done" in done.stdout
    assert "| tiny-llama | lora-bf16 |" in done.stdout and "failed" not in done.stdout
    assert "| 28 labels, YesNo |" in done.stdout and "Generative fine-tuning" in done.stdout
    assert (REPO / "docs" / "benchmarks.md").read_text() == doc  # a smoke run writes no figures
