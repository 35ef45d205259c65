"""Serve a source's previous run again: `agnes sources rollback NAME`.

Like a sync's publication, the control plane is the commit point: ONE
transaction records the previous run as the source's run (the run rolled back
from becomes its previous run, so a second rollback goes forward again) and
bumps the publication counter, which makes every serving process re-attach it.
Only then do the `current`/`previous` pointers follow (engine/publish.py).
Refused while a sync of the source runs (it holds the source's sync lock), and
when there is no previous run or it is gone or no longer valid.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from contract_tests.validator import validate_extract

from agnes.control import audit, publications
from agnes.control import sources as sources_repo
from agnes.engine.publish import PublishError, point_at, run_dir, sync_lock_nowait, validate_source_name
from agnes.errors import AgnesError
from agnes.services.instance import Instance


async def rollback_source(instance: Instance, source: str, *, actor: str = "cli") -> publications.Publication:
    """Record the previous run as served (counter bumped), re-point the folder; returns the new publication."""
    try:
        validate_source_name(source)
    except PublishError:
        raise AgnesError("source_not_found", f"No source is called {source!r}.") from None
    extracts = instance.settings.extracts_dir
    with sync_lock_nowait(extracts, source) as free:
        if not free:
            raise AgnesError("source_busy", f"A sync of source {source!r} is running, so it cannot be rolled back now.")
        async with instance.control.read() as conn:
            if await sources_repo.get(conn, source) is None:
                raise AgnesError("source_not_found", f"No source is called {source!r}.")
            before = await publications.get(conn, source)
        target = before.previous_run_id if before is not None else None
        path = run_dir(extracts, source, target)
        if before is None or target is None or path is None:
            raise AgnesError("nothing_to_roll_back", f"Source {source!r} has no previous run to roll back to.")
        if not path.is_dir():
            raise AgnesError("nothing_to_roll_back",
                             f"The previous run {target} of source {source!r} is missing on disk.")
        report = await asyncio.to_thread(validate_extract, path, source_name=source)
        if not report.ok:
            raise AgnesError("nothing_to_roll_back", f"The previous run {target} of source {source!r} no longer "
                             f"meets the extract contract: {report.to_text()[:500]}")
        stamps = [t.extracted_at for t in report.tables if t.extracted_at]
        async with instance.control.transaction() as conn:
            now = await publications.get(conn, source)
            if now is None or now.run_id != before.run_id:  # cannot happen under the sync lock; be exact anyway
                raise AgnesError("source_busy", f"Source {source!r} was published meanwhile; nothing was changed.")
            pub = await publications.record(conn, source=source, run_id=target, previous_run_id=before.run_id,
                                            extracted_at=_iso(max(stamps)) if stamps else None)
            await audit.record(conn, action="source_rolled_back", actor=actor, target=f"source:{source}",
                               detail={"run_id": target, "from_run_id": before.run_id, "serial": pub.serial})
        await asyncio.to_thread(point_at, extracts, source, target, before.run_id)
    return pub


def _iso(value: str) -> str:
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except ValueError:
        return value
