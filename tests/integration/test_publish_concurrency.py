"""Publishing under fire: killed writers and readers racing the pointer switch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from agnes.engine import publish as pub

MARKER = "COMPLETE"


def _publish_complete_run(extracts: Path, source: str, label: str, keep: int = pub.KEEP_RUNS) -> pub.PublishedRun:
    staging = pub.new_staging_dir(extracts, source)
    (staging / "data").mkdir()
    (staging / "data" / "t.parquet").write_bytes(b"x" * 1024)
    (staging / MARKER).write_text(label)  # written last, as a connector's READY would be
    return pub.publish(extracts, source, staging, keep=keep)


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        text=True,
    )


SLOW_WRITER = """
    import sys, time
    from pathlib import Path
    from agnes.engine import publish as pub
    staging = pub.new_staging_dir(Path(sys.argv[1]), "crm")
    (staging / "data").mkdir()
    print(staging, flush=True)
    with open(staging / "data" / "big.parquet", "wb") as f:
        for _ in range(10_000):
            f.write(b"y" * 65536)
            f.flush()
            time.sleep(0.001)
    (staging / "COMPLETE").write_text("never")
    pub.publish(Path(sys.argv[1]), "crm", staging)
"""


def test_sigkilled_writer_leaves_previous_run_serving(tmp_path: Path) -> None:
    served = _publish_complete_run(tmp_path, "crm", "v1")
    proc = _spawn(SLOW_WRITER, str(tmp_path))
    staging = Path(proc.stdout.readline().strip())
    big = staging / "data" / "big.parquet"
    deadline = time.monotonic() + 10
    while not big.exists() or big.stat().st_size < 1 << 20:
        assert time.monotonic() < deadline, "writer never started writing"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    assert staging.is_dir(), "the half-written staging folder is what a killed sync leaves"
    assert pub.current_run(tmp_path, "crm") == served.path.resolve()
    assert (tmp_path / "crm" / "current" / MARKER).read_text() == "v1"

    removed = pub.cleanup_leftovers(tmp_path)
    assert removed == [staging]
    assert not staging.exists()
    assert list((tmp_path / "crm" / "staging").iterdir()) == []
    assert (tmp_path / "crm" / "current" / MARKER).read_text() == "v1"
    assert _publish_complete_run(tmp_path, "crm", "v2").previous_run_id == served.run_id


PUBLISH_LOOP = """
    import sys
    from pathlib import Path
    from agnes.engine import publish as pub
    root = Path(sys.argv[1])
    print("ready", flush=True)
    i = 0
    while True:
        s = pub.new_staging_dir(root, "crm")
        (s / "data").mkdir()
        (s / "data" / "t.parquet").write_bytes(b"z" * 4096)
        (s / "COMPLETE").write_text(str(i))
        pub.publish(root, "crm", s)
        i += 1
"""


def test_killed_at_any_moment_of_publish_never_breaks_current(tmp_path: Path) -> None:
    _publish_complete_run(tmp_path, "crm", "seed")
    for delay in (0.05, 0.11, 0.17, 0.23, 0.31, 0.37, 0.43, 0.5):
        proc = _spawn(PUBLISH_LOOP, str(tmp_path))
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert (tmp_path / "crm" / "current" / MARKER).exists()
        pub.cleanup_leftovers(tmp_path)
        leftovers = [p for p in (tmp_path / "crm").iterdir() if p.name.startswith(pub._TMP_LINK)]
        assert leftovers == []
        assert list((tmp_path / "crm" / "staging").iterdir()) == []
        _publish_complete_run(tmp_path, "crm", f"after-{delay}")
        assert (tmp_path / "crm" / "current" / MARKER).read_text() == f"after-{delay}"


def test_pointer_switch_is_atomic_for_readers(tmp_path: Path) -> None:
    _publish_complete_run(tmp_path, "crm", "0")
    current = tmp_path / "crm" / "current"
    stop = threading.Event()
    seen: list[str] = []
    failures: list[str] = []

    def reader() -> None:
        reads = 0
        while not (stop.is_set() and reads >= 10_000):
            resolved = os.path.realpath(current)
            if not os.path.exists(os.path.join(resolved, MARKER)):
                failures.append(f"resolved {resolved} without marker")
            try:
                with open(current / MARKER) as f:
                    seen.append(f.read())
            except OSError as exc:
                failures.append(repr(exc))
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(1, 201):
        # No pruning here: a folder deleted two publishes later is not a torn pointer.
        _publish_complete_run(tmp_path, "crm", str(i), keep=1000)
    stop.set()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert failures == []
    assert len(seen) >= 10_000
    assert all(label.isdigit() for label in seen)
    assert len(set(seen)) > 10, "the reader should have observed many different runs"
    assert len(list((tmp_path / "crm" / "runs").iterdir())) == 201
