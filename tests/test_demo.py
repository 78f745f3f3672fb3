"""`comp demo` (what `make demo` runs) goes through the whole loop and ends with a scored submission."""

import re
import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "comp", "demo", "--keep", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for step in (
        "comp init",
        "comp fetch",
        "comp folds",
        "comp train configs/tfidf.yaml",
        "comp train configs/nbsvm.yaml",
        "comp ensemble",
        "comp thresholds blend",
        "comp submit blend --dry-run",
    ):
        assert step in out
    scores = [float(s) for s in re.findall(r"f1_macro = ([0-9.]+) over 800 rows", out)]
    assert len(scores) == 3 and min(scores) > 0.6  # three validated submissions scored on the answer key
    submissions = sorted((tmp_path / "comp-demo-emotions" / "submissions").glob("*.csv"))
    assert len(submissions) == 3 and (tmp_path / "comp-demo-emotions" / "submissions" / "ledger.db").is_file()
