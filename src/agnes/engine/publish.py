"""Atomic publishing of extract runs: immutable run folders + a symlink pointer.

Layout under `$DATA_DIR/extracts/<source>/`:

    staging/<run_id>/        a connector writes here (locked by its writer)
    staging/<run_id>.lock    flock held while the staging folder is alive
    runs/<run_id>/           immutable once published (extract.duckdb + data/)
    current  -> runs/<id>    what is served; switched with os.replace (atomic)
    previous -> runs/<id>    kept for rollback; never pruned

Why symlinks: `rename(2)` of a symlink over another is atomic on POSIX, so a
reader resolving `current` sees the old run or the new one, never a
half-written folder, and a killed sync leaves the old pointer in place.
No DuckDB here on purpose: workers publish, only the serving process attaches.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agnes.durable import fsync_dir

SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED_SOURCES = frozenset({"main", "system", "temp", "memory", "information_schema", "pg_catalog"})
RUN_ID_RE = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")
KEEP_RUNS = 2
_TMP_LINK = ".tmp-link-"
_TRASH = ".trash-"

# Staging lock fds held by this process, released by publish()/discard_staging().
_staging_locks: dict[Path, int] = {}


class PublishError(Exception):
    """A publish/rollback request that cannot be honoured (the message says why)."""


@dataclass(frozen=True)
class PublishedRun:
    source: str
    run_id: str
    path: Path
    previous_run_id: str | None


def validate_source_name(source: str) -> str:
    """Source names become folder and schema names: keep them boring and safe."""
    if not SOURCE_RE.match(source or "") or source in RESERVED_SOURCES:
        raise PublishError(
            f"invalid source name {source!r}: use ^[a-z][a-z0-9_]{{0,62}}$ and not one of {sorted(RESERVED_SOURCES)}"
        )
    return source


def new_run_id(now: datetime | None = None) -> str:
    """Sortable, unique run id: UTC microseconds + 6 random hex digits."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def new_staging_dir(extracts_dir: Path, source: str) -> Path:
    """Create `staging/<run_id>/` and hold its lock until publish or discard."""
    staging = Path(extracts_dir) / validate_source_name(source) / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    fd = os.open(staging / f"{run_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    path = staging / run_id
    path.mkdir()
    _staging_locks[path.resolve()] = fd
    return path


def discard_staging(staging_dir: Path) -> None:
    """Drop a staging folder that failed validation (or was cancelled)."""
    path = Path(staging_dir).resolve()
    shutil.rmtree(path, ignore_errors=True)
    _release_staging(path)


def publish(extracts_dir: Path, source: str, staging_dir: Path, *, keep: int = KEEP_RUNS) -> PublishedRun:
    """Move a validated staging folder to `runs/` and switch `current` to it."""
    source_dir = Path(extracts_dir) / validate_source_name(source)
    staging = _checked_staging(source_dir, staging_dir)
    run_id = staging.name
    with _source_lock(source_dir):
        runs = source_dir / "runs"
        runs.mkdir(exist_ok=True)
        target = runs / run_id
        if target.exists():
            raise PublishError(f"run {run_id} of source {source!r} is already published")
        _fsync_tree(staging)
        os.rename(staging, target)  # same filesystem: atomic
        fsync_dir(staging.parent)
        fsync_dir(runs)
        previous = _link_target(source_dir / "current")
        if previous is not None:
            _switch(source_dir, "previous", previous)
        _switch(source_dir, "current", run_id)
        fsync_dir(source_dir)
        _release_staging(staging)
        _prune(source_dir, keep)
    return PublishedRun(source, run_id, target, previous)


def current_run(extracts_dir: Path, source: str) -> Path | None:
    """The real path of the served run, or None when nothing is published."""
    link = Path(extracts_dir) / validate_source_name(source) / "current"
    if not link.is_symlink():
        return None
    path = link.resolve()
    return path if path.is_dir() else None


def published_runs(extracts_dir: Path) -> dict[str, Path]:
    """Every source with a served run: the mapping `ServingCatalog.sync_sources` takes."""
    root = Path(extracts_dir)
    if not root.is_dir():
        return {}
    found: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if SOURCE_RE.match(entry.name) and entry.name not in RESERVED_SOURCES:
            path = current_run(root, entry.name)
            if path is not None:
                found[entry.name] = path
    return found


def rollback(extracts_dir: Path, source: str) -> PublishedRun:
    """Serve the previous run again; `previous` then points at the run rolled back from."""
    source_dir = Path(extracts_dir) / validate_source_name(source)
    with _source_lock(source_dir):
        current = _link_target(source_dir / "current")
        previous = _link_target(source_dir / "previous")
        if current is None or previous is None or previous == current:
            raise PublishError(f"source {source!r} has no previous run to roll back to")
        target = source_dir / "runs" / previous
        if not target.is_dir():
            raise PublishError(f"previous run {previous} of source {source!r} is missing on disk")
        _switch(source_dir, "previous", current)
        _switch(source_dir, "current", previous)
        fsync_dir(source_dir)
    return PublishedRun(source, previous, target, current)


def remove_source(extracts_dir: Path, source: str) -> None:
    """Unpublish a source: rename its folder away (atomic for readers), then delete it."""
    source_dir = Path(extracts_dir) / validate_source_name(source)
    if not source_dir.exists():
        return
    with _source_lock(source_dir):
        trash = source_dir.parent / f"{_TRASH}{source}-{secrets.token_hex(4)}"
        os.rename(source_dir, trash)
        fsync_dir(source_dir.parent)
    shutil.rmtree(trash, ignore_errors=True)


def hold_run(run_path: Path) -> int:
    """Shared lock on a run folder while it is attached: pruning skips held runs.

    A query can run on a run that publishing has already superseded twice; without
    this, pruning would delete files under it. Release with `release_run`.
    """
    fd = os.open(run_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def release_run(fd: int) -> None:
    os.close(fd)


def cleanup_leftovers(extracts_dir: Path) -> list[Path]:
    """At start-up: remove what a killed sync left behind (unlocked staging, temp links, trash).

    Never touches `runs/`, `current` or `previous`. A staging folder whose lock is
    still held (a sync running in another process) is left alone.
    """
    root = Path(extracts_dir)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(_TRASH):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
            continue
        if entry.is_symlink() or not entry.is_dir():
            continue
        for link in entry.glob(f"{_TMP_LINK}*"):
            link.unlink(missing_ok=True)
            removed.append(link)
        removed.extend(_cleanup_staging(entry / "staging"))
    return removed


# --- internals -----------------------------------------------------------------------


def _cleanup_staging(staging: Path) -> list[Path]:
    removed: list[Path] = []
    if not staging.is_dir():
        return removed
    for item in sorted(staging.iterdir()):
        if item.suffix == ".lock":
            continue
        lock = staging / f"{item.name}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            if item.is_dir() and not item.is_symlink():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
            removed.append(item)
        finally:
            os.close(fd)
    for lock in staging.glob("*.lock"):  # orphan locks whose folder is gone
        if not (staging / lock.stem).exists():
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                lock.unlink(missing_ok=True)
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
    return removed


def _checked_staging(source_dir: Path, staging_dir: Path) -> Path:
    """Refuse anything but a direct child of this source's staging folder."""
    raw = Path(staging_dir)
    expected_parent = (source_dir / "staging").resolve()
    if raw.is_symlink():
        raise PublishError(f"staging folder {raw} is a symlink; publish only folders made by new_staging_dir")
    path = raw.resolve()
    if path.parent != expected_parent or not RUN_ID_RE.match(path.name):
        raise PublishError(
            f"{raw} is not a staging folder of source {source_dir.name!r}; "
            f"create one with new_staging_dir() under {expected_parent}"
        )
    if not path.is_dir():
        raise PublishError(f"staging folder {path} does not exist")
    return path


@contextmanager
def _source_lock(source_dir: Path) -> Iterator[None]:
    """Serialize publish/rollback/remove of one source across processes."""
    source_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(source_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _switch(source_dir: Path, name: str, run_id: str) -> None:
    tmp = source_dir / f"{_TMP_LINK}{name}-{secrets.token_hex(4)}"
    os.symlink(f"runs/{run_id}", tmp)
    os.replace(tmp, source_dir / name)


def _link_target(link: Path) -> str | None:
    """The run id a pointer names (`runs/<id>`), or None."""
    try:
        target = os.readlink(link)
    except OSError:
        return None
    name = Path(target).name
    return name if RUN_ID_RE.match(name) else None


def _prune(source_dir: Path, keep: int) -> None:
    protected = {_link_target(source_dir / "current"), _link_target(source_dir / "previous")}
    runs = sorted((p for p in (source_dir / "runs").iterdir() if RUN_ID_RE.match(p.name)), reverse=True)
    for index, run in enumerate(runs):
        if index < keep or run.name in protected:
            continue
        fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # still attached by a serving catalog: a later publish prunes it
        else:
            shutil.rmtree(run, ignore_errors=True)
        finally:
            os.close(fd)


def _release_staging(path: Path) -> None:
    fd = _staging_locks.pop(path, None)
    lock = path.parent / f"{path.name}.lock"
    lock.unlink(missing_ok=True)
    if fd is not None:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder of a run before it becomes visible."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))
