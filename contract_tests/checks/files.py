"""Every file of an extract is a regular file or a real folder — never a link.

A symlink would let one source serve another source's data (or any file the
server can read), and a FIFO or device would hang or confuse the reader. So
the whole extract folder is walked with lstat, never following a link, and
whatever is not a regular file or a directory is a violation. Later checks
skip what is reported here instead of reading through it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..report import Report
from .opening import DATA_DIR, EXTRACT_FILE

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


@dataclass
class BadFiles:
    """What the walk reported: extract-relative POSIX paths, and the tables they belong to."""

    paths: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)
    db_file: bool = False

    def blocked(self, rel: str) -> bool:
        """True when `rel` or a folder above it was reported (so it must not be read)."""
        parts = rel.split("/")
        return any("/".join(parts[: i + 1]) in self.paths for i in range(len(parts)))


def _table_of(rel: str) -> str | None:
    parts = rel.split("/")
    if len(parts) < 2 or parts[0] != DATA_DIR:
        return None
    name = parts[1]
    return name[: -len(".parquet")] if len(parts) == 2 and name.endswith(".parquet") else name


def check_files(extract_dir: Path, db_file: Path, report: Report) -> BadFiles:
    """Walk the extract folder without following links; report links and special files."""
    bad = BadFiles()
    found: list[tuple[str, os.stat_result, Path]] = []
    try:
        st = os.lstat(db_file)
    except OSError:
        st = None
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        found.append((db_file.name, st, db_file))
    if extract_dir.is_dir():
        stack = [extract_dir]
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                path = Path(entry.path)
                if path == db_file:
                    continue  # checked above (also when the caller passed the file itself)
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # vanished while walking
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
                elif not stat.S_ISREG(st.st_mode):
                    found.append((path.relative_to(extract_dir).as_posix(), st, path))
    for rel, st, path in sorted(found, key=lambda f: f[0]):
        bad.paths.add(rel)
        table = _table_of(rel)
        if table:
            bad.tables.add(table)
        if path == db_file:
            bad.db_file = True
        if stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(path)
            except OSError:
                target = "?"
            report.add(
                "data_symlink",
                table,
                f"{rel} is a symbolic link (to {target}); an extract may hold only regular files and folders, "
                "because a link would serve data from outside this extract",
                f"replace the link with a copy of the data: cp --remove-destination \"$(readlink -f {rel})\" {rel} "
                f"(for a folder: rm {rel} && cp -r <target> {rel}), or write the file there directly",
            )
        else:
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            report.add(
                "not_a_regular_file",
                table,
                f"{rel} is {kind}; an extract may hold only regular files and folders",
                f"remove {rel} and write the data as a regular file "
                f"({EXTRACT_FILE}, {DATA_DIR}/<table>.parquet or {DATA_DIR}/<table>/*.parquet)",
            )
    return bad
