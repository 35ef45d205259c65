"""Query time limits on ONE shared timer thread instead of a `threading.Timer` per query.

Why: starting a thread per query cost 0.3-1 ms (the caller waits for the new
thread to start), a third of a `SELECT 1`. `Deadline` has Timer's interface
(`start`, `cancel`, a settable `daemon`), so the executor swaps it in place.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class _Clock:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.due, next(self._seq), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="agnes-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is deadline:
                self._cond.notify()  # only an earlier deadline changes when the clock must wake

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][2].cancelled:
                    if self._heap:
                        heapq.heappop(self._heap)  # drop cancelled entries
                    else:
                        self._cond.wait()
                due, _, deadline = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            if not deadline.cancelled:
                try:
                    deadline.function()
                except Exception:  # noqa: BLE001, S110 -- one failing callback must not stop every limit
                    pass


_CLOCK = _Clock()


class Deadline:
    """Call `function` once, `seconds` after `start()`, unless `cancel()` came first."""

    def __init__(self, seconds: float, function: Callable[[], object]) -> None:
        self.seconds, self.function = seconds, function
        self.due = 0.0
        self.cancelled = False
        self.daemon = True  # Timer compatibility; the clock thread is always a daemon

    def start(self) -> None:
        self.due = time.monotonic() + self.seconds
        _CLOCK.add(self)

    def cancel(self) -> None:
        self.cancelled = True
