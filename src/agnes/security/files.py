"""Race-free helpers for the small secret files in state/.

Two processes may start together on an empty data directory: both must end
with the same bytes, and no reader may ever see a half-written file. So the
content is written and fsynced under a temporary name first and only then
published under its real name in one atomic step.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
from pathlib import Path

from agnes.durable import fsync_dir

log = logging.getLogger(__name__)

# errno values meaning "this filesystem cannot hard-link" (some network/FUSE mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


def _write_temp(directory: Path, name: str, data: bytes, mode: int) -> Path:
    """A complete, fsynced copy of `data` beside its final place."""
    tmp = directory / f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have changed the mode os.open used
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def _fsync_dir(directory: Path) -> None:
    """Best effort here: not every filesystem lets a directory be fsynced, and these files are tiny."""
    try:
        fsync_dir(directory)
    except OSError:
        pass


def _publish_once(tmp: Path, path: Path) -> bool:
    """Give `tmp` the name `path` unless it exists; True if this call won."""
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    # No hard links here: serialise the check-and-rename with a lock file instead.
    lock = path.with_name(path.name + ".lock")
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if path.exists():
            return False
        os.replace(tmp, path)
        return True


def write_once(path: Path, data: bytes, mode: int = 0o600) -> bytes:
    """Create `path` with `data` unless it exists; return what the file holds.

    When several processes race, exactly one wins and every caller gets the
    winner's bytes back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path.parent, path.name, data, mode)
    try:
        if _publish_once(tmp, path):
            _fsync_dir(path.parent)
            return data
        return path.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically set `path` to `data`: readers see the old or the new content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path.parent, path.name, data, mode)
    try:
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def read_secret_file(path: Path) -> bytes | None:
    """The file's bytes, or None if it does not exist.

    A secret readable by group or others is narrowed to 0600 (with a warning)
    rather than refused, so an old or hand-made file does not stop startup.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s had mode %o (readable by others); restricting it to 0600", path, mode)
            try:
                os.chmod(path, 0o600)
            except OSError as exc:
                log.warning("could not restrict %s to 0600: %s", path, exc)
        return path.read_bytes()
    except FileNotFoundError:
        return None
