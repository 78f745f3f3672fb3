"""`comp --help` start-up time: the median wall and CPU time of 5 runs each of `python -m comp --help`, of
`python -c "import comp.cli"` and of a bare interpreter (`python -c pass`), side by side in one run,
and the modules that `comp --help` imports (no torch, pandas, sklearn, ...: test_cli checks that).

    .venv/bin/python bench/bench_cli.py
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time

from common import machine, write_section

RUNS = 5
CASES = {
    "python -m comp --help": [sys.executable, "-m", "comp", "--help"],
    'python -c "import comp.cli"': [sys.executable, "-c", "import comp.cli"],
    "python -c pass (the interpreter alone)": [sys.executable, "-c", "pass"],
}


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run; on a busy machine the CPU time is
    what the wall time would be on an idle one, since waiting for a core is not counted in it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    subprocess.run(CASES["python -m comp --help"], check=True, capture_output=True)  # warm the file cache
    load = os.getloadavg()[0]  # other work on the machine slows every row alike
    times = {name: [timed(argv) for _ in range(RUNS)] for name, argv in CASES.items()}
    counted = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, runpy\nsys.argv = ['comp', '--help']\ntry:\n"
            "    runpy.run_module('comp', run_name='__main__', alter_sys=True)\nexcept SystemExit:\n    pass\n"
            "print(len(sys.modules), sum(m == 'comp' or m.startswith('comp.') for m in sys.modules), file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr.split()
    rows = "\n".join(
        f"| `{name}` | {statistics.median(w for w, _ in t):.2f} | {min(w for w, _ in t):.2f} | "
        f"{max(w for w, _ in t):.2f} | {statistics.median(c for _, c in t):.2f} |"
        for name, t in times.items()
    )
    text = f"""## `comp --help` start-up

Median wall time and CPU time of {RUNS} runs each, in seconds ({machine()}, 1-minute load average
{load:.1f} at the start). `comp --help` imports {counted[0]} modules in all, {counted[1]} of them comp's,
and none of torch, transformers, peft, datasets, kaggle, matplotlib, optuna, pandas or sklearn
(tests/test_cli.py checks that for `--help` and every `COMMAND --help`).

| command | median wall s | min wall s | max wall s | median CPU s (user + sys) |
|---|---:|---:|---:|---:|
{rows}

Reproduce: `.venv/bin/python bench/bench_cli.py`."""
    print(text)
    write_section("cli", text)


if __name__ == "__main__":
    main()
