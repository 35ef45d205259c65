"""The live side of one running job: its log tail, heartbeat and cancel flag.

Why a heartbeat: a process killed with SIGKILL cannot mark its job failed.
The owner refreshes `jobs.heartbeat_at` every few seconds; the recovery sweep
fails a running job whose heartbeat went stale. The same loop polls
`cancel_requested`, so a cancel reaches a job in the server or in any arq
worker the same way, and it notices when the job stopped being ours (the
sweep gave up on us after a stall): then it cancels itself instead of
publishing over a job the API already reports as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime

from agnes.control import jobs as jobs_repo
from agnes.control.db import ControlPlane

log = logging.getLogger("agnes.jobs")

TAIL_LINES = 200
LINE_CHARS = 2000  # a connector may print megabyte lines; the job row keeps a readable tail
POLL_SECONDS = 1.0  # how quickly a cancel request is seen
HEARTBEAT_SECONDS = 5.0  # how often heartbeat_at (and log_tail) is written
STALE_AFTER_SECONDS = 60.0  # a running job with an older heartbeat is dead (recovery.py)


class JobRun:
    """Owner-side state of a claimed job; use as `async with JobRun(...) as run:`."""

    def __init__(self, control: ControlPlane, job_id: int, owner: str) -> None:
        self.control, self.job_id, self.owner = control, job_id, owner
        self.lines: deque[str] = deque(maxlen=TAIL_LINES)
        self.cancel = asyncio.Event()
        self.lost = False  # the row is no longer ours/running: never publish again
        self._dirty = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> JobRun:
        self._task = asyncio.create_task(self._watch(), name=f"agnes-job-{self.job_id}-heartbeat")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def say(self, line: str, *, prefix: str = "agnes") -> None:
        """Add one line (`HH:MM:SS [prefix] text`) to the job's log tail."""
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        for part in str(line).splitlines() or [""]:
            part = part if len(part) <= LINE_CHARS else part[:LINE_CHARS] + " …[cut]"
            self.lines.append(f"{stamp} [{prefix}] {part}")
        self._dirty = True
        log.info("job %s: [%s] %s", self.job_id, prefix, line)

    @property
    def tail(self) -> str:
        return "\n".join(self.lines)

    async def flush(self) -> None:
        """Write heartbeat + log tail now; notice when the job was taken from us."""
        async with self.control.transaction() as conn:
            ours = await jobs_repo.heartbeat(conn, self.job_id, self.owner, self.tail)
        self._dirty = False
        if not ours and not self.lost:
            self.lost = True
            self.cancel.set()
            log.warning("job %s is no longer running as %s; stopping it", self.job_id, self.owner)

    async def _watch(self) -> None:
        elapsed = 0.0
        while True:
            await asyncio.sleep(POLL_SECONDS)
            elapsed += POLL_SECONDS
            try:
                async with self.control.read() as conn:
                    if await jobs_repo.cancel_requested(conn, self.job_id) and not self.cancel.is_set():
                        self.say("cancel requested: stopping the connector")
                        self.cancel.set()
                if elapsed >= HEARTBEAT_SECONDS:
                    elapsed = 0.0
                    await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # a locked database must not kill the heartbeat loop
                log.exception("job %s: heartbeat failed; retrying", self.job_id)
