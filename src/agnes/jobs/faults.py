"""A fault hook for crash tests: `AGNES_FAULT_KILL_AT=<point>` SIGKILLs the process at that point.

For tests only (tests/integration/test_publish_crash.py); never set it in
production. It lets a real `agnes serve` / `agnes worker` die exactly between
two steps of a publication, so a test can restart it and check that the job
row, the control plane's record, what queries return and the `current`
pointer agree. Reading the variable is one dict lookup per point and sync.

Points, in the order a sync reaches them:
    connector   the connector reported its first table (it is still running)
    validated   the staging folder passed the contract; nothing published yet
    installed   the run was moved to runs/<id>; not recorded in the control plane
    recorded    the publications row is committed (the commit point); pointers not switched
    switched    `current`/`previous` point at the new run; tables not registered yet
"""

from __future__ import annotations

import logging
import os
import signal

ENV = "AGNES_FAULT_KILL_AT"
POINTS = ("connector", "validated", "installed", "recorded", "switched")
log = logging.getLogger("agnes.jobs")


def kill_point(point: str) -> None:
    """SIGKILL this process if `AGNES_FAULT_KILL_AT` names `point` (tests only)."""
    if os.environ.get(ENV) == point:
        log.critical("%s=%s: killing process %s (fault injection for tests)", ENV, point, os.getpid())
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
