"""Tier B hand-over: a container outside Agnes writes `inbox/<name>/` and creates
`READY` last; Agnes moves the run into a staging folder and publishes it like
any connector's output.

A run that is refused (it cannot be taken, or it breaks the contract) comes
back into its folder for inspection, with `REJECTED` (written by Agnes) saying
why and without `READY`, so it is not taken again until the producer writes a
fixed run and creates `READY` once more. `REJECTED` is removed when the next
run is taken.

Only regular files and folders are taken: a symbolic link (or a FIFO, socket,
device) anywhere in the folder refuses the run before anything moves, so a
run can never publish (or later delete) a file outside its own folder.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

READY = "READY"
REJECTED = "REJECTED"
_MARKERS = {READY, REJECTED}
PUT_BACK = ("Its files are back in this folder for inspection. Fix them (or write a new run), then create READY "
            "again, last; Agnes takes the run on its next inbox check.")
NOT_PUT_BACK = ("Its files were not put back: a newer run was already being written into this folder, and that one "
                "wins.")


class InboxError(Exception):
    """The inbox folder cannot be taken as a run."""


def ready_sources(inbox_dir: Path) -> list[str]:
    """Folders whose producer has finished (READY exists), oldest marker first."""
    if not inbox_dir.is_dir():
        return []
    found = [(p.parent.stat().st_mtime, p.parent.name) for p in inbox_dir.glob(f"*/{READY}") if p.is_file()]
    return [name for _, name in sorted(found)]


def unsafe_entries(folder: Path) -> list[str]:
    """Everything in `folder` (links are never followed) that is not a regular file or folder."""
    if os.path.islink(folder):
        return [f"inbox/{folder.name} itself is a symbolic link (to {os.readlink(folder)})"]
    found: list[str] = []

    def fail(exc: OSError) -> None:
        raise exc

    for root, dirs, files in os.walk(folder, followlinks=False, onerror=fail):
        for name in sorted([*dirs, *files]):
            path = Path(root) / name
            mode = os.lstat(path).st_mode
            rel = path.relative_to(folder).as_posix()
            if stat.S_ISLNK(mode):
                found.append(f"{rel} is a symbolic link (to {os.readlink(path)})")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                found.append(f"{rel} is not a regular file or folder")
    return found


def take_run(folder: Path, staging: Path) -> list[str]:
    """Move everything but the markers into `staging`, then drop READY; returns what moved.

    Raises InboxError when the folder is not a run that can be taken; whatever
    already moved stays in `staging` for `reject` to put back.
    """
    if not os.path.islink(folder) and not (folder / READY).is_file():
        raise InboxError(f"{folder.name}: no READY marker; the producer must create it last")
    try:
        unsafe = unsafe_entries(folder)
    except OSError as exc:
        raise InboxError(f"{folder.name}: cannot read the run: {exc}") from exc
    if unsafe:
        shown = "; ".join(unsafe[:10]) + (f"; and {len(unsafe) - 10} more" if len(unsafe) > 10 else "")
        raise InboxError(f"{folder.name}: only regular files and folders can be handed over, but {shown}. Write "
                         "real files (copy the data instead of linking to it) and create READY last")
    entries = [p for p in folder.iterdir() if p.name not in _MARKERS]
    if not entries:
        raise InboxError(f"{folder.name}: READY but empty; write extract.duckdb (and data/) before READY")
    for path in entries:
        try:
            _move(path, staging / path.name)
        except OSError as exc:
            raise InboxError(f"{folder.name}: moving {path.name} into staging failed: {exc}") from exc
    (folder / READY).unlink(missing_ok=True)
    _drop(folder / REJECTED)
    return sorted(p.name for p in entries)


def reject(folder: Path, message: str, staging: Path | None = None) -> None:
    """Refuse a run that was not taken (still marked READY): put back whatever already moved
    into `staging`, write the reason into REJECTED and remove READY, so it is not retried."""
    if os.path.islink(folder):  # never write through the link: replace it by a real folder
        message += f"\nAgnes removed the link inbox/{folder.name} (its target is untouched)."
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    left = _put_back(staging, folder) if staging is not None else []
    _write_rejected(folder, _with_outcome(message, left, put_back=True))
    (folder / READY).unlink(missing_ok=True)


def give_back(folder: Path, staging: Path, message: str | None) -> bool:
    """A taken run was not published: move it from `staging` back into its folder.

    `message` None (the sync stopped, the run was not judged): READY is created
    again, so the next inbox check retries it. Otherwise the run was refused:
    REJECTED says why and READY is not recreated. READY is never removed here:
    one present now marks the producer's next run. If the producer has already
    started that next run (anything but REJECTED in the folder), the newer run
    wins and the old files are not put back (returns False).
    """
    if os.path.islink(folder):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    busy = any(p.name != REJECTED for p in folder.iterdir())
    left = [p.name for p in staging.iterdir()] if busy else _put_back(staging, folder)
    if message is None:
        if not busy and not left:
            (folder / READY).touch()
            return True
        message = "The sync stopped before this run was published."
    _write_rejected(folder, _with_outcome(message, left, put_back=not busy))
    return not busy and not left


def _with_outcome(message: str, left: list[str], *, put_back: bool) -> str:
    text = message.rstrip()
    if not put_back:
        return f"{text}\n\n{NOT_PUT_BACK}\n"
    if left:
        return f"{text}\n\nThese files could not be put back and are lost: {', '.join(left)}. {PUT_BACK}\n"
    return f"{text}\n\n{PUT_BACK}\n"


def _put_back(staging: Path | None, folder: Path) -> list[str]:
    """Move staging's entries into `folder` without replacing anything; returns the names left behind."""
    if staging is None or not staging.is_dir():
        return []
    left: list[str] = []
    for path in sorted(staging.iterdir()):
        target = folder / path.name
        if os.path.lexists(target):
            left.append(path.name)
            continue
        try:
            _move(path, target)
        except OSError:
            left.append(path.name)
    return left


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)  # same volume: atomic and instant
    except OSError:
        shutil.move(str(src), str(dst))


def _drop(path: Path) -> None:
    """Remove a marker without following a link a producer may have put in its place."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write_rejected(folder: Path, text: str) -> None:
    path = folder / REJECTED
    _drop(path)  # O_EXCL | O_NOFOLLOW below: never write through a planted link
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
