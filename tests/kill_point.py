"""Run the comp command line and stop at a chosen point, so a test can kill -9 it there.

    COMP_KILL_AT=module:Class.method:N COMP_KILL_MARK=FILE python tests/kill_point.py comp-arguments...

On the N-th call of ``Class.method`` the process writes FILE (its pid) and then sleeps until it is
killed: the test waits for FILE and sends SIGKILL, so the kill lands at exactly that point of a fold,
with everything before it on disk as a real crash would leave it. ``COMP_CHUNK_ROWS`` sets the LLM
families' scoring chunk (comp.models.labelling.CHUNK_ROWS) so that a small fold has several chunks.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path


def _install(spec: str, mark: Path) -> None:
    where, n = spec.rsplit(":", 1)
    module_name, attribute = where.split(":")
    owner_name, method_name = attribute.split(".")
    owner = getattr(importlib.import_module(module_name), owner_name)
    original, calls = getattr(owner, method_name), [0]

    def stopping(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == int(n):
            mark.write_text(str(os.getpid()))
            while True:  # held here until the test's SIGKILL
                time.sleep(60)
        return original(self, *args, **kwargs)

    setattr(owner, method_name, stopping)


if __name__ == "__main__":
    if os.environ.get("COMP_CHUNK_ROWS"):
        from comp.models import labelling

        labelling.CHUNK_ROWS = int(os.environ["COMP_CHUNK_ROWS"])
    if os.environ.get("COMP_KILL_AT"):
        _install(os.environ["COMP_KILL_AT"], Path(os.environ["COMP_KILL_MARK"]))
    from comp.cli import main

    sys.argv = ["comp", *sys.argv[1:]]
    main()
