"""`torchrun --nproc-per-node 2 -m comp train` on CPU (gloo): two real processes, a tiny model, and
only rank 0 writes into the workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_models import make_backbone

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("tiny-bert"), "bert")


def test_two_process_cpu_ddp_trains_and_only_rank_0_writes(bert_dir, tmp_path):
    from comp.runs import load_run
    from tests.helpers import make_workspace

    ws = make_workspace(tmp_path, "multiclass", train_rows=64, test_rows=16)
    config = ws.configs_dir / "tiny.yaml"
    config.write_text(
        f"model: transformer\nbackbone: {bert_dir}\nepochs: 1\nbatch_size: 8\nlr: 3.0e-3\n"
        "max_length: 32\nsave_models: true\n"
    )
    audit = tmp_path / "audit"
    env = {
        **os.environ,
        "COMP_AUDIT_ROOT": str(ws.root),
        "COMP_AUDIT_OUT": str(audit),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "GLOO_SOCKET_IFNAME": "lo",
        "TORCHELASTIC_ERROR_FILE": str(tmp_path / "error.json"),
    }
    # --standalone: a rendezvous on a free localhost port, so parallel test runs never collide
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(REPO / "tests" / "ddp_audit.py"),
        "--workspace",
        str(ws.root),
        "train",
        str(config),
        "--folds",
        "2",
    ]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    rank0 = (audit / "rank-0.txt").read_text().split()
    rank1 = (audit / "rank-1.txt").read_text().split()
    assert rank1 == [], rank1  # rank 1 trains and predicts, but writes nothing into the workspace
    for k in (0, 1):
        assert any(p.startswith(f"runs/tiny/fold-{k}/") and "model" in p for p in rank0)
    assert "runs/tiny/oof.parquet" in rank0 and "runs/tiny/test.parquet" in rank0
    log = (ws.run("tiny").log).read_text()
    assert log.count("fold 0: done") == 1 and log.count("fold 1: done") == 1
    run = load_run(ws, "tiny")
    assert run.oof.shape == (64, 3) and np.allclose(run.oof.sum(1), 1.0, atol=1e-6)
