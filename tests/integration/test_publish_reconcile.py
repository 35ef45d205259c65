"""The control plane's record is the truth: serving follows it, recovery aligns the disk with it.

Real SQLite control plane, real folders, real flocks (a second process holds the sync lock).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from contract_tests.fixtures import build_valid_extract

from agnes.control import publications
from agnes.engine import publish as pub
from agnes.jobs import recovery
from agnes.services.instance import start_instance
from agnes.services.serving import CatalogService
from tests.helpers import run_agnes


def _install(extracts: Path, source: str) -> str:
    staging = pub.new_staging_dir(extracts, source)
    build_valid_extract(staging)
    return pub.install_run(extracts, source, staging).name


async def _record(instance: Any, source: str, run_id: str, previous: str | None) -> None:
    async with instance.control.transaction() as conn:
        await conn.execute("INSERT OR IGNORE INTO sources (name, type, created_at, updated_at) "
                           "VALUES (?, 'external', '', '')", (source,))
        await publications.record(conn, source=source, run_id=run_id, previous_run_id=previous, extracted_at=None)


def _link(extracts: Path, source: str, name: str) -> str | None:
    return pub._link_target(extracts / source / name)


async def test_serving_attaches_the_recorded_run_not_the_current_pointer(make_settings: Any) -> None:
    instance = await start_instance(make_settings(), serve=False)
    service = CatalogService(instance)
    extracts = instance.settings.extracts_dir
    try:
        first = _install(extracts, "alpha")
        await _record(instance, "alpha", first, None)
        pub.point_at(extracts, "alpha", first, None)
        second = _install(extracts, "alpha")
        pub.point_at(extracts, "alpha", second, first)  # the pointer moved, the record did not (a kill)
        await service.refresh(force=True)
        assert service.catalog.sources == {"alpha": extracts / "alpha" / "runs" / first}
        await _record(instance, "alpha", second, first)  # the commit point: now it is served
        report = await service.refresh()
        assert report is not None and report.attached == ["alpha"]
        assert service.catalog.sources == {"alpha": extracts / "alpha" / "runs" / second}
    finally:
        await service.stop()
        await instance.close()


HOLD_SYNC_LOCK = """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.readline()
"""


def _hold_sync_lock(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD_SYNC_LOCK), str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


async def test_recovery_aligns_pointers_and_removes_unrecorded_runs_unless_a_sync_holds_the_source(
        make_settings: Any) -> None:
    instance = await start_instance(make_settings(), serve=False)
    extracts = instance.settings.extracts_dir
    try:
        first = _install(extracts, "alpha")
        second = _install(extracts, "alpha")
        await _record(instance, "alpha", second, first)
        # A kill between the two pointer switches of the old order: previous == current == first.
        pub._switch(extracts / "alpha", "previous", first)
        pub._switch(extracts / "alpha", "current", first)
        orphan = _install(extracts, "alpha")  # a kill between install and record
        held = _install(extracts, "alpha")  # unrecorded too, but a serving process still holds it
        hold = pub.hold_run(extracts / "alpha" / "runs" / held)

        # Another process (a worker's live sync) holds the source: recovery touches nothing.
        locker = _hold_sync_lock(extracts / "alpha" / pub.SYNC_LOCK)
        try:
            assert locker.stdout.readline().strip() == "held"
            report = await recovery.recover(instance, requeue_queued=False, clean=True)
            assert report.repointed == []
            assert (extracts / "alpha" / "runs" / orphan).is_dir()
            assert _link(extracts, "alpha", "current") == first
        finally:
            locker.communicate("\n", timeout=10)

        report = await recovery.recover(instance, requeue_queued=False, clean=True)
        assert report.repointed == ["alpha"]
        assert (_link(extracts, "alpha", "current"), _link(extracts, "alpha", "previous")) == (second, first)
        runs = sorted(p.name for p in (extracts / "alpha" / "runs").iterdir())
        assert runs == sorted([first, second, held])  # the orphan is gone; the held run waits for its reader
        assert str(extracts / "alpha" / "runs" / orphan) in report.cleaned
        pub.release_run(hold)
        await recovery.recover(instance, requeue_queued=False, clean=True)
        assert sorted(p.name for p in (extracts / "alpha" / "runs").iterdir()) == sorted([first, second])
    finally:
        await instance.close()


def test_owner_in_another_pid_namespace_is_left_to_the_heartbeat() -> None:
    host = socket.gethostname()
    ours = recovery.PID_NAMESPACE
    assert ours is not None and ours.isdigit()  # Linux: /proc/self/ns/pid
    assert recovery.owner_id("worker").endswith(f"#{recovery.PROCESS_TOKEN}~{ours}")
    gone = 999_999_999
    other = str(int(ours) + 1)
    # Same hostname (a shared hostname across containers), another pid namespace: the pid says nothing here.
    assert not recovery.owner_is_dead(f"worker:{gone}@{host}#abc~{other}")
    assert not recovery.owner_is_dead(f"worker:{os.getpid()}@{host}#abc~{other}")
    # Same namespace: judged by pid and token as before.
    assert recovery.owner_is_dead(f"worker:{gone}@{host}#abc~{ours}")
    assert recovery.owner_is_dead(f"server:{os.getpid()}@{host}#other~{ours}")
    assert not recovery.owner_is_dead(recovery.owner_id("server"))
    # Old rows (no namespace, no token) keep their meaning.
    assert recovery.owner_is_dead(f"worker:{gone}@{host}")
    assert recovery.owner_is_dead(f"server:{gone}@{host}#abc")
    assert not recovery.owner_is_dead(f"worker:{gone}@another-host#abc~{ours}")


async def test_cli_rollback_records_the_previous_run_and_serving_follows(make_settings: Any, data_dir: Path) -> None:
    instance = await start_instance(make_settings(), serve=False)
    service = CatalogService(instance)
    extracts = instance.settings.extracts_dir
    try:
        first = _install(extracts, "alpha")
        await _record(instance, "alpha", first, None)
        pub.point_at(extracts, "alpha", first, None)
        once = run_agnes(["sources", "rollback", "alpha"], data_dir)
        assert once.returncode == 2 and "nothing_to_roll_back" in once.stderr and "hint:" in once.stderr
        assert "source_not_found" in run_agnes(["sources", "rollback", "ghost"], data_dir).stderr
        second = _install(extracts, "alpha")
        await _record(instance, "alpha", second, first)
        pub.point_at(extracts, "alpha", second, first)
        await service.refresh()
        async with instance.control.read() as conn:
            counter = await publications.counter(conn)

        done = await asyncio.to_thread(run_agnes, ["sources", "rollback", "alpha"], data_dir)
        assert done.returncode == 0, done.stderr
        async with instance.control.read() as conn:
            row = await publications.get(conn, "alpha")
            assert await publications.counter(conn) == counter + 1  # serving processes notice it
        assert (row.run_id, row.previous_run_id) == (first, second)
        assert (_link(extracts, "alpha", "current"), _link(extracts, "alpha", "previous")) == (first, second)
        assert (await service.refresh()).attached == ["alpha"]
        assert service.catalog.sources == {"alpha": extracts / "alpha" / "runs" / first}

        again = await asyncio.to_thread(run_agnes, ["sources", "rollback", "alpha"], data_dir)  # forward again
        assert again.returncode == 0, again.stderr
        await service.refresh()
        assert service.catalog.sources == {"alpha": extracts / "alpha" / "runs" / second}
    finally:
        await service.stop()
        await instance.close()
