"""Start a connector so it cannot outlive the process that runs it.

If `agnes serve` or `agnes worker` is killed with SIGKILL, nothing is left to
stop its connector: it would keep writing into a staging folder nobody will
publish, holding memory and the source's API quota. On Linux the kernel sends
the connector SIGKILL when its parent dies (PR_SET_PDEATHSIG); this module sets
that up, then runs `extractor.py` in the same interpreter as `python
extractor.py` would (same `sys.path[0]`, `__main__` and absolute `__file__`; `sys.argv[0]` is absolute too).
Usage (by the runner): python /path/to/launch.py PARENT_PID extractor.py -- by file
path, not `-m`, so only the standard library loads first: importing `agnes` would
pull in DuckDB and pyarrow, and a connector's own `agnes.py` would shadow the package.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the runner's own kill paths still apply
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(137)


def main(argv: list[str]) -> None:
    parent, script = int(argv[0]), argv[1]
    _die_with_parent(parent)
    sys.argv = [script, *argv[2:]]  # runpy sets argv[0] to the path it runs
    path = os.path.abspath(script)
    sys.path[0] = os.path.dirname(path)
    runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
