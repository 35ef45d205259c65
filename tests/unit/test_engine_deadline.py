"""The shared deadline clock: fires once after its delay, never after cancel, in due order."""

from __future__ import annotations

import threading
import time

from agnes.engine.deadline import Deadline


def test_fires_in_order_and_cancel_wins():
    fired: list[str] = []
    done = threading.Event()
    late = Deadline(0.15, lambda: (fired.append("late"), done.set()))
    early = Deadline(0.05, lambda: fired.append("early"))
    never = Deadline(0.01, lambda: fired.append("never"))
    started = time.monotonic()
    for d in (late, early, never):
        d.start()
    never.cancel()
    assert done.wait(2)
    assert fired == ["early", "late"] and time.monotonic() - started >= 0.15


def test_many_cancelled_deadlines_do_not_delay_a_live_one():
    hit = threading.Event()
    for _ in range(1000):
        d = Deadline(0.01, lambda: None)
        d.start()
        d.cancel()
    Deadline(0.02, hit.set).start()
    assert hit.wait(1)
