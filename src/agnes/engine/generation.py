"""One DuckDB database of the serving catalog, plus the bookkeeping that makes swaps safe.

Readers run in their own DuckDB transaction, so a view swap committed in one
transaction is seen all-or-nothing (DuckDB's catalog is MVCC). What is NOT
transactional is DETACH: detaching the old run while a query that bound to it
is still running fails that query. So every reader takes a ticket (the current
epoch); a commit that stops using an alias bumps the epoch and retires the
alias; `reap()` detaches it only once no reader holding an older ticket is left.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agnes.engine.connection import ConnectionPolicy, lock_down, open_connection, quote_ident
from agnes.engine.extract_reader import TableEntry
from agnes.engine.publish import release_run
from agnes.engine.remote import RemoteSpec

# Attached runs ("_x_…") and remote databases ("_r_…") are reachable by name, with the
# extract's own views inside: the query guard must let user SQL read only the default catalog.
INTERNAL_CATALOG_PREFIXES = ("_x_", "_r_")


@dataclass
class SourceState:
    """What the catalog serves for one source."""

    source: str
    run_path: Path
    x_alias: str
    remote_aliases: set[str]
    tables: dict[str, TableEntry] = field(default_factory=dict)


class Generation:
    """An in-memory DuckDB database with the views of every served source."""

    def __init__(self, policy: ConnectionPolicy, allowed_dirs: list[Path]) -> None:
        self.con = open_connection(policy)  # only for cursor() and close()
        self.writer = self.con.cursor()  # all DDL, from the sync thread only
        self.allowed_dirs = allowed_dirs
        self.locked = False
        self.sources: dict[str, SourceState] = {}
        self.names: dict[str, set[str]] = {}  # bare table name -> sources having it
        self.remote_attached: dict[str, RemoteSpec] = {}
        self.extensions: set[str] = set()  # LOADed before the lock (cannot LOAD after)
        self.run_holds: dict[str, int] = {}  # x alias -> fd holding its run folder (see publish.hold_run)
        self.guard = threading.Lock()  # sources/names: written by the sync thread, read by any
        self._seq = itertools.count(1)
        self._mutex = threading.Lock()
        self._epoch = 0
        self._readers: Counter[int] = Counter()
        self._retired: list[tuple[int, str]] = []
        self._closing = False
        self._closed = False

    def lock(self) -> None:
        lock_down(self.writer, self.allowed_dirs)
        self.locked = True

    def new_x_alias(self, source: str, run_path: Path) -> str:
        """Unique per attach: a re-attached run never reuses an alias still being reaped."""
        digest = hashlib.sha1(str(run_path).encode()).hexdigest()[:8]  # noqa: S324 -- a name
        return f"_x_{source}_{digest}_{next(self._seq)}"

    # --- readers -------------------------------------------------------------------

    def enter(self) -> int:
        with self._mutex:
            if self._closing:
                raise RuntimeError("the serving catalog is closed")
            self._readers[self._epoch] += 1
            return self._epoch

    def leave(self, ticket: int) -> None:
        with self._mutex:
            self._readers[ticket] -= 1
            if not self._readers[ticket]:
                del self._readers[ticket]
            close_now = self._closing and not self._readers and not self._closed
            if close_now:
                self._closed = True
        if close_now:
            self._close()

    @property
    def active_readers(self) -> int:
        with self._mutex:
            return sum(self._readers.values())

    # --- retiring ------------------------------------------------------------------

    def retire(self, aliases: Iterable[str]) -> None:
        """Call right AFTER the commit that stopped using `aliases`."""
        with self._mutex:
            self._epoch += 1
            self._retired.extend((self._epoch, alias) for alias in aliases)

    def unretire(self, alias: str) -> None:
        """A retired remote alias is needed again (same spec): keep it attached."""
        with self._mutex:
            self._retired = [(epoch, name) for epoch, name in self._retired if name != alias]

    def reap(self) -> list[str]:
        """Detach retired aliases no running query can still use. Sync thread only."""
        with self._mutex:
            oldest = min(self._readers) if self._readers else None
            ready = [name for epoch, name in self._retired if oldest is None or oldest >= epoch]
            self._retired = [(e, n) for e, n in self._retired if n not in ready]
        for alias in ready:
            self.detach(alias)
        return ready

    @property
    def pending_detach(self) -> list[str]:
        with self._mutex:
            return [name for _epoch, name in self._retired]

    def detach(self, alias: str) -> None:
        self.writer.execute(f"DETACH DATABASE IF EXISTS {quote_ident(alias)}")
        if alias in self.run_holds:
            release_run(self.run_holds.pop(alias))
        if alias in self.remote_attached:
            del self.remote_attached[alias]
            self.writer.execute(f"DROP TEMPORARY SECRET IF EXISTS {quote_ident(alias + '_secret')}")

    def close_when_idle(self) -> None:
        """Replaced by a newer generation: close once the last reader leaves."""
        with self._mutex:
            self._closing = True
            close_now = not self._readers and not self._closed
            if close_now:
                self._closed = True
        if close_now:
            self._close()

    def _close(self) -> None:
        self.writer.close()
        self.con.close()
        for fd in self.run_holds.values():
            release_run(fd)
        self.run_holds.clear()
