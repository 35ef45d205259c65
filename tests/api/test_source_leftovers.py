"""Start-up cleanup of what killed uploads and half-finished source deletes leave behind (real files, real flocks)."""

from __future__ import annotations

import fcntl
import os
import time

from agnes.jobs.recovery import recover


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


async def test_start_up_removes_killed_uploads_and_folders_of_deleted_sources(client, admin_token, auth, app,
                                                                             data_dir):
    h = auth(admin_token)
    resp = await client.post("/api/admin/configure", json={"data_source": "csv"}, headers=h)
    assert resp.status_code == 200, resp.text
    settings = app.state.instance.settings
    uploads = settings.uploads_dir / "csv"
    (uploads / "orders.csv").write_bytes(b"id\n1\n")
    killed = uploads / ".upload-0123.csv"  # an upload killed mid-way: nobody holds its lock
    killed.write_bytes(b"id\n1\n2")
    _age(killed, 3600)
    fresh = uploads / ".upload-4567.csv"  # created a moment ago: maybe not locked yet by its writer
    fresh.write_bytes(b"id\n")
    live = uploads / ".upload-89ab.csv"  # an upload still streaming in another process: locked
    live.write_bytes(b"id\n")
    _age(live, 3600)
    old_snapshot = uploads / ".run-cafe"  # a sync killed while its connector read the snapshot
    old_snapshot.mkdir()
    (old_snapshot / "orders.csv").write_bytes(b"id\n1\n")
    _age(old_snapshot, 3600)
    # a deleted source whose files survived the delete (removal failed after the commit)
    ghost_run = settings.extracts_dir / "ghost" / "runs" / "r1"
    ghost_run.mkdir(parents=True)
    (settings.extracts_dir / "ghost" / "previous").symlink_to(ghost_run)
    (settings.uploads_dir / "ghost").mkdir()
    (settings.uploads_dir / "ghost" / "old.csv").write_bytes(b"id\n1\n")
    (settings.state_dir / "connectors" / "ghost").mkdir(parents=True)
    (settings.extracts_dir / "csv").mkdir(parents=True, exist_ok=True)  # a live source: kept

    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        report = await recover(app.state.instance, requeue_queued=False, clean=True)
    finally:
        os.close(fd)

    assert not killed.exists() and not old_snapshot.exists()
    assert fresh.exists() and live.exists() and (uploads / "orders.csv").exists()
    assert not (settings.extracts_dir / "ghost").exists() and not (settings.uploads_dir / "ghost").exists()
    assert not (settings.state_dir / "connectors" / "ghost").exists()
    assert (settings.extracts_dir / "csv").is_dir()
    assert {str(killed), str(old_snapshot), str(settings.uploads_dir / "ghost")} <= set(report.cleaned)
    # a new source of that name starts empty: no previous run, no uploaded files
    resp = await client.post("/api/admin/configure", json={"data_source": "csv", "name": "ghost"}, headers=h)
    assert resp.status_code == 200, resp.text
    assert not (settings.extracts_dir / "ghost").exists()
    assert list((settings.uploads_dir / "ghost").iterdir()) == []
