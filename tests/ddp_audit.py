"""Run the comp CLI while recording, per process, every write under a folder: files opened for writing,
renames, new folders and deletions (Python's audit events). For the multi-process DDP test:

    COMP_AUDIT_ROOT=WORKSPACE COMP_AUDIT_OUT=DIR python tests/ddp_audit.py comp-arguments...

writes DIR/rank-<RANK>.txt, one path per line.
"""

from __future__ import annotations

import atexit
import os
import sys

ROOT = os.path.realpath(os.environ["COMP_AUDIT_ROOT"])
OUT = os.environ["COMP_AUDIT_OUT"]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
seen: list[str] = []


def _record(path) -> None:
    if isinstance(path, int):
        return  # a file descriptor: its opening was recorded
    path = os.path.realpath(os.fsdecode(path))
    if path == ROOT or path.startswith(ROOT + os.sep):
        seen.append(os.path.relpath(path, ROOT))


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        path, mode, flags = args
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
        if writing and path is not None:
            _record(path)
    elif event in ("os.rename", "os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
        _record(args[1] if event == "os.rename" else args[0])


def _dump() -> None:
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"rank-{os.environ.get('RANK', '0')}.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(seen) + ("\n" if seen else ""))


if __name__ == "__main__":
    sys.addaudithook(_hook)
    atexit.register(_dump)
    from comp.cli import main

    sys.argv = ["comp", *sys.argv[1:]]
    main()
