"""Run every benchmark in bench/ in turn; each writes its own section of docs/benchmarks.md.

    .venv/bin/python bench/run_all.py [NAME ...]

(names: cli metrics thresholds determinism quality stack distill prompt transformer tricks tune pipeline)

GPU figures have their own command: `make gpu-check` (bench/gpu_check.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = [
    "cli",
    "metrics",
    "thresholds",
    "determinism",
    "quality",
    "stack",
    "distill",
    "prompt",
    "transformer",
    "tricks",
    "tune",
    "pipeline",
    "transfer",
]


def main() -> int:
    names = sys.argv[1:] or ORDER
    failed = []
    for name in names:
        script = HERE / f"bench_{name}.py"
        if not script.is_file():
            print(f"no benchmark {script.name}; choose from {', '.join(ORDER)}")
            failed.append(name)
            continue
        print(f"== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
