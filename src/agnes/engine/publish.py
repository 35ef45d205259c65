"""Atomic publishing of extract runs: immutable run folders + pointers that follow the control plane.

Layout under `$DATA_DIR/extracts/<source>/`:

    staging/<run_id>/        a connector writes here (locked by its writer)
    staging/<run_id>.lock    flock held while the staging folder is alive
    runs/<run_id>/           immutable once installed (extract.duckdb + data/)
    current  -> runs/<id>    mirrors the control plane's recorded run (a cache for humans/tools)
    previous -> runs/<id>    mirrors the recorded previous run (kept for `agnes sources rollback`; never pruned)
    .sync.lock               held by a sync (jobs/sync.py) from staging to the pointer switch
    .lock                    held while runs/ or the pointers change (install, point, remove)

The commit point of a publication is the control plane's `publications` row
(written with the counter bump in ONE transaction), not a file: a sync
1. installs the validated staging folder as `runs/<id>` (`install_run`, one rename),
2. records it in the control plane (jobs/sync.py),
3. points `current`/`previous` at the recorded runs (`point_at`).
A kill before 2 leaves an unrecorded run that nobody serves (removed at start-up
by `reconcile`); a kill after 2 leaves pointers that lag behind, which recovery
and the next sync re-point. Serving attaches `runs/<publications.run_id>`
(`recorded_runs`), never whatever `current` says.

Why symlinks: `rename(2)` of a symlink over another is atomic on POSIX, so a
reader resolving `current` sees the old run or the new one, never a
half-written folder. No DuckDB here on purpose: workers publish, only the
serving process attaches.
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

from contract_tests.spec import SOURCE_NAME_RE

from agnes.durable import fsync_dir

SOURCE_RE = SOURCE_NAME_RE  # the contract's pattern; the reserved set here is only what breaks folders/schemas
RESERVED_SOURCES = frozenset({"main", "system", "temp", "memory", "information_schema", "pg_catalog"})
RUN_ID_RE = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")
KEEP_RUNS = 2
SYNC_LOCK = ".sync.lock"  # jobs/sync.py holds it from staging to point_at; recovery only acts when it is free
_TMP_LINK = ".tmp-link-"
_TRASH = ".trash-"

# Staging lock fds held by this process, released by publish()/discard_staging().
_staging_locks: dict[Path, int] = {}


class PublishError(Exception):
    """A publish request that cannot be honoured (the message says why)."""


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


def install_run(extracts_dir: Path, source: str, staging_dir: Path) -> Path:
    """Step 1 of a publication: move a validated staging folder to `runs/<id>` (durably); returns it.

    Nothing serves the run until the control plane records it; if that never
    happens, `reconcile` (at start-up) or `discard_run` removes it.
    """
    source_dir = Path(extracts_dir) / validate_source_name(source)
    staging = _checked_staging(source_dir, staging_dir)
    with _source_lock(source_dir):
        return _install(source_dir, staging)


def point_at(extracts_dir: Path, source: str, run_id: str, previous_run_id: str | None, *,
             keep: int = KEEP_RUNS) -> bool:
    """Step 3: make `current`/`previous` name the recorded runs, then prune; True if a pointer moved.

    Idempotent (recovery calls it to repair pointers left behind by a kill).
    A missing previous run only drops the `previous` pointer.
    """
    source_dir = Path(extracts_dir) / validate_source_name(source)
    with _source_lock(source_dir):
        return _point(source_dir, run_id, previous_run_id, keep)


def discard_run(extracts_dir: Path, source: str, run_id: str) -> None:
    """Remove an installed run the control plane did not record (its recording failed)."""
    source_dir = Path(extracts_dir) / validate_source_name(source)
    if not RUN_ID_RE.match(run_id or ""):
        return
    with _source_lock(source_dir):
        if run_id in {_link_target(source_dir / "current"), _link_target(source_dir / "previous")}:
            return
        shutil.rmtree(source_dir / "runs" / run_id, ignore_errors=True)


def publish(extracts_dir: Path, source: str, staging_dir: Path, *, keep: int = KEEP_RUNS) -> PublishedRun:
    """`install_run` + `point_at(previous = the old current pointer)`, without a control plane.

    For tools and tests only: a sync (jobs/sync.py) records the run in the
    control plane between the two steps, which is what makes it served.
    """
    source_dir = Path(extracts_dir) / validate_source_name(source)
    staging = _checked_staging(source_dir, staging_dir)
    with _source_lock(source_dir):
        previous = _link_target(source_dir / "current")
        target = _install(source_dir, staging)
        _point(source_dir, target.name, previous, keep)
    return PublishedRun(source, target.name, target, previous)


def run_dir(extracts_dir: Path, source: str, run_id: str | None) -> Path | None:
    """`runs/<run_id>` of a source (whether or not it exists), or None for a missing/invalid id."""
    if not run_id or not RUN_ID_RE.match(run_id):
        return None
    return (Path(extracts_dir) / validate_source_name(source) / "runs" / run_id).resolve()


def recorded_runs(extracts_dir: Path, recorded: dict[str, str]) -> dict[str, Path]:
    """source -> run folder for the control plane's recorded runs (`publications.run_id`).

    The mapping `ServingCatalog.sync_sources` takes. A recorded folder that is
    missing stays in the mapping, so attaching it fails loudly (health) instead
    of the source silently disappearing; an invalid name or id is left out.
    """
    found: dict[str, Path] = {}
    for source, run_id in sorted(recorded.items()):
        try:
            path = run_dir(extracts_dir, source, run_id)
        except PublishError:
            continue
        if path is not None:
            found[source] = path
    return found


@contextmanager
def sync_lock_nowait(extracts_dir: Path, source: str) -> Iterator[bool]:
    """Try the source's sync lock without waiting: True while held, False if a sync (any process) has it.

    Never creates a source folder: a source with no folder yields True (nothing to guard).
    """
    source_dir = Path(extracts_dir) / validate_source_name(source)
    if not source_dir.is_dir():
        yield True
        return
    fd = os.open(source_dir / SYNC_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@dataclass
class Reconciled:
    source: str
    repointed: bool = False
    removed: list[Path] | None = None
    problem: str | None = None
    run_path: Path | None = None  # the recorded run's folder, when it is on disk


def reconcile(extracts_dir: Path, source: str, run_id: str | None, previous_run_id: str | None, *,
              remove_unrecorded: bool) -> Reconciled:
    """Make the disk agree with the control plane's record (caller holds the sync lock).

    Re-points `current`/`previous` at the recorded runs; with `remove_unrecorded`
    (start-up) also removes runs that are neither (a kill between install and
    record), skipping runs a serving process still holds. Nothing recorded:
    pointers go, runs go (with `remove_unrecorded`).
    """
    source_dir = Path(extracts_dir) / validate_source_name(source)
    done = Reconciled(source, removed=[])
    if not source_dir.is_dir():
        return done
    with _source_lock(source_dir):
        if run_id is not None:
            try:
                done.repointed = _point(source_dir, run_id, previous_run_id, KEEP_RUNS)
            except PublishError as exc:
                done.problem = str(exc)
                return done  # the recorded run is missing: touch nothing else (serving reports it)
            done.run_path = (source_dir / "runs" / run_id).resolve()
        elif remove_unrecorded:
            for name in ("current", "previous"):
                if (source_dir / name).is_symlink():
                    (source_dir / name).unlink()
                    done.repointed = True
        if remove_unrecorded and (source_dir / "runs").is_dir():
            keep = {run_id, previous_run_id}
            for run in sorted((source_dir / "runs").iterdir()):
                if RUN_ID_RE.match(run.name) and run.name not in keep and _remove_unheld(run):
                    done.removed.append(run)
    return done


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
    """Serialize install/point/remove of one source across processes."""
    source_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(source_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _install(source_dir: Path, staging: Path) -> Path:
    runs = source_dir / "runs"
    runs.mkdir(exist_ok=True)
    target = runs / staging.name
    if target.exists():
        raise PublishError(f"run {staging.name} of source {source_dir.name!r} is already published")
    _fsync_tree(staging)
    os.rename(staging, target)  # same filesystem: atomic
    fsync_dir(staging.parent)
    fsync_dir(runs)
    _release_staging(staging)
    return target


def _point(source_dir: Path, run_id: str, previous_run_id: str | None, keep: int) -> bool:
    if not RUN_ID_RE.match(run_id or "") or (previous_run_id is not None and not RUN_ID_RE.match(previous_run_id)):
        raise PublishError(f"invalid run id {run_id!r}/{previous_run_id!r} for source {source_dir.name!r}")
    if not (source_dir / "runs" / run_id).is_dir():
        raise PublishError(f"run {run_id} of source {source_dir.name!r} is missing on disk")
    if previous_run_id == run_id or (previous_run_id is not None
                                     and not (source_dir / "runs" / previous_run_id).is_dir()):
        previous_run_id = None
    moved = False
    if _link_target(source_dir / "previous") != previous_run_id:
        if previous_run_id is None:
            (source_dir / "previous").unlink(missing_ok=True)
        else:
            _switch(source_dir, "previous", previous_run_id)
        moved = True
    if _link_target(source_dir / "current") != run_id:
        _switch(source_dir, "current", run_id)
        moved = True
    if moved:
        fsync_dir(source_dir)
    _prune(source_dir, keep, protect={run_id, previous_run_id})
    return moved


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


def _prune(source_dir: Path, keep: int, protect: set[str | None] = frozenset()) -> None:  # type: ignore[assignment]
    """Keep the `keep` newest runs, the pointed-at ones and `protect` (the recorded run and previous run)."""
    protected = {_link_target(source_dir / "current"), _link_target(source_dir / "previous"), *protect}
    runs = sorted((p for p in (source_dir / "runs").iterdir() if RUN_ID_RE.match(p.name)), reverse=True)
    for index, run in enumerate(runs):
        if index < keep or run.name in protected:
            continue
        _remove_unheld(run)  # still attached by a serving catalog: a later publish prunes it


def _remove_unheld(run: Path) -> bool:
    """Delete a run folder unless a serving process holds it (hold_run); True if deleted."""
    try:
        fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        shutil.rmtree(run, ignore_errors=True)
        return True
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
