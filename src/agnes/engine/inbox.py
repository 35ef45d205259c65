"""Tier B hand-over: a container outside Agnes writes `inbox/<name>/` and creates
`READY` last; Agnes moves the run into a staging folder and publishes it like
any connector's output.

`REJECTED` (written by Agnes) tells the producer why its last run was refused;
it is removed when the next run is taken.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

READY = "READY"
REJECTED = "REJECTED"
_MARKERS = {READY, REJECTED}


class InboxError(Exception):
    """The inbox folder cannot be taken as a run."""


def ready_sources(inbox_dir: Path) -> list[str]:
    """Folders whose producer has finished (READY exists), oldest marker first."""
    if not inbox_dir.is_dir():
        return []
    found = [(p.parent.stat().st_mtime, p.parent.name) for p in inbox_dir.glob(f"*/{READY}") if p.is_file()]
    return [name for _, name in sorted(found)]


def take_run(folder: Path, staging: Path) -> list[str]:
    """Move everything but the markers into `staging`, then drop READY; returns what moved."""
    if not (folder / READY).is_file():
        raise InboxError(f"{folder.name}: no READY marker; the producer must create it last")
    entries = [p for p in folder.iterdir() if p.name not in _MARKERS]
    if not entries:
        raise InboxError(f"{folder.name}: READY but empty; write extract.duckdb (and data/) before READY")
    for path in entries:
        target = staging / path.name
        try:
            os.replace(path, target)  # same volume: atomic and instant
        except OSError:
            shutil.move(str(path), str(target))
    (folder / READY).unlink(missing_ok=True)
    (folder / REJECTED).unlink(missing_ok=True)
    return sorted(p.name for p in entries)


def reject(folder: Path, message: str) -> None:
    """Tell the producer why (its data stays for inspection); READY goes so it is not retried."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REJECTED).write_text(message.rstrip() + "\n", encoding="utf-8")
    (folder / READY).unlink(missing_ok=True)
