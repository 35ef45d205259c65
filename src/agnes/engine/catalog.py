"""The serving catalog: one long-lived, locked-down DuckDB that exposes every published table.

Each table is the view `"<source>"."<table>"`; while a name is unique across
sources it is also the bare view `main."<table>"` (a collision drops the bare
name and is reported, never last-writer-wins).

Why it is fast: `sync_sources` touches only sources whose run folder changed;
one source's views (and the bare names it touches) are replaced in ONE DuckDB
transaction, so a running query sees the old run or the new one, never a mix.
The old run is detached only when no query that could still use it is running
(see generation.py).

Why it is safe: the connection is locked (no external access outside the
extracts folder, configuration frozen). A locked connection can still ATTACH
new runs, but cannot LOAD an extension or ATTACH a network database; when a
new remote alias needs that, a fresh generation is built (everything attached
while trusted, then locked) and swapped in -- rare, and reported as `rebuilt`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from agnes.engine.attach import NeedsRebuild, SourceError, attach_source, describe_all, remove_source
from agnes.engine.connection import ConnectionPolicy
from agnes.engine.generation import INTERNAL_CATALOG_PREFIXES, Generation
from agnes.engine.publish import PublishError, validate_source_name

__all__ = [
    "INTERNAL_CATALOG_PREFIXES",
    "CatalogTable",
    "QueryRefused",
    "ServingCatalog",
    "SourceError",
    "SyncReport",
]


class QueryRefused(Exception):
    """`execute_readonly` accepts exactly one SELECT-like statement."""


@dataclass(frozen=True)
class CatalogTable:
    id: str
    source: str
    name: str
    description: str | None
    rows: int | None
    size_bytes: int | None
    extracted_at: datetime | None
    query_mode: str
    columns: list[tuple[str, str]]
    status: str  # "ok" | "stale" (the newest run failed to attach; an older one is served)


@dataclass
class SyncReport:
    attached: list[str] = field(default_factory=list)  # (re)attached because the run changed
    detached: list[str] = field(default_factory=list)  # no longer published
    unchanged: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    rebuilt: bool = False  # a fresh generation was built and swapped in
    elapsed_ms: float = 0.0


class ServingCatalog:
    """The serving process's catalog; `sync_sources` from one thread, queries from any."""

    def __init__(
        self,
        extracts_dir: Path,
        policy: ConnectionPolicy | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.extracts_dir = Path(extracts_dir).resolve()
        self.extracts_dir.mkdir(parents=True, exist_ok=True)
        self._policy = policy or ConnectionPolicy()
        self._environ = environ
        self._mutex = threading.Lock()  # guards the generation pointer and _failed
        self._sync_lock = threading.Lock()  # one sync at a time
        self._failed: dict[str, tuple[Path, str]] = {}
        self._gen = Generation(self._policy, [self.extracts_dir])
        self._gen.lock()

    # --- syncing ---------------------------------------------------------------------

    def sync_sources(self, published: Mapping[str, Path]) -> SyncReport:
        """Make the catalog serve exactly `published` (source -> run folder)."""
        started = time.perf_counter()
        report = SyncReport()
        desired: dict[str, Path] = {}
        for source, path in published.items():
            try:
                desired[validate_source_name(source)] = Path(path).resolve()
            except PublishError as exc:
                report.errors[source] = str(exc)
        with self._sync_lock:
            gen = self._gen
            gen.reap()
            changed = sorted(s for s, p in desired.items() if s not in gen.sources or gen.sources[s].run_path != p)
            report.unchanged = sorted(set(desired) - set(changed))
            with self._mutex:
                self._failed = {s: f for s, f in self._failed.items() if s in desired}
            todo = []
            for source in changed:
                failed = self._failed.get(source)
                if failed and failed[0] == desired[source]:
                    report.errors[source] = failed[1]  # same broken run: do not retry every second
                else:
                    todo.append(source)
            if not gen.sources and todo:
                self._rebuild(desired, set(todo), report)
            else:
                self._sync_live(gen, desired, todo, report)
            self._gen.reap()
        report.elapsed_ms = (time.perf_counter() - started) * 1000
        return report

    def _sync_live(self, gen: Generation, desired: dict[str, Path], todo: list[str], report: SyncReport) -> None:
        for source in sorted(set(gen.sources) - set(desired)):
            remove_source(gen, source)
            report.detached.append(source)
        for index, source in enumerate(todo):
            try:
                attach_source(gen, source, desired[source], self._environ)
            except NeedsRebuild:
                self._rebuild(desired, set(todo[index:]), report)
                return
            except SourceError as exc:
                self._fail(source, desired[source], str(exc), report)
            else:
                report.attached.append(source)
                with self._mutex:
                    self._failed.pop(source, None)

    def _rebuild(self, desired: dict[str, Path], want: set[str], report: SyncReport) -> None:
        """Attach everything into a fresh, still-trusted database, lock it, swap it in."""
        old = self._gen
        new = Generation(self._policy, [self.extracts_dir])
        try:
            for source in sorted(desired):
                served = old.sources.get(source)
                candidates = [desired[source]] if source in want else []
                if served is not None and served.run_path not in candidates:
                    candidates.append(served.run_path)
                for path in candidates:
                    try:
                        attach_source(new, source, path, self._environ, describe=False)
                    except (SourceError, NeedsRebuild) as exc:
                        if path == desired[source]:
                            self._fail(source, path, str(exc), report)
                        continue
                    if path == desired[source] and source in want:
                        if source not in report.attached:
                            report.attached.append(source)
                        with self._mutex:
                            self._failed.pop(source, None)
                    break
            describe_all(new)
            new.lock()
        except BaseException:
            new.close_when_idle()
            raise
        with self._mutex:
            self._gen = new
        old.close_when_idle()
        report.rebuilt = bool(old.sources)
        report.detached = sorted(set(report.detached) | (set(old.sources) - set(desired)))

    def _fail(self, source: str, path: Path, message: str, report: SyncReport) -> None:
        report.errors[source] = message
        with self._mutex:
            self._failed[source] = (path, message)

    # --- reading ---------------------------------------------------------------------

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A per-use cursor of the current generation, registered so nothing it uses is detached."""
        with self._mutex:
            gen = self._gen
            ticket = gen.enter()
            try:
                cur = gen.con.cursor()
            except BaseException:
                gen.leave(ticket)
                raise
        try:
            yield cur
        finally:
            cur.close()
            gen.leave(ticket)

    def execute_readonly(self, sql: str, params: Any = None) -> pa.Table:
        """Run one SELECT-like statement and return it as Arrow (tests, internal callers)."""
        with self.cursor() as cur:
            statements = cur.extract_statements(sql)
            if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
                raise QueryRefused("only one SELECT statement is accepted")
            return cur.execute(sql, params).to_arrow_table()

    def tables(self) -> list[CatalogTable]:
        with self._mutex:
            gen = self._gen
            stale = set(self._failed)
        with gen.guard:
            states = sorted(gen.sources.values(), key=lambda s: s.source)
        return [
            CatalogTable(
                id=f"{state.source}.{t.name}",
                source=state.source,
                name=t.name,
                description=t.description,
                rows=t.rows,
                size_bytes=t.size_bytes,
                extracted_at=t.extracted_at,
                query_mode=t.query_mode,
                columns=list(t.columns),
                status="stale" if state.source in stale else "ok",
            )
            for state in states
            for t in sorted(state.tables.values(), key=lambda t: t.name)
        ]

    @property
    def collisions(self) -> dict[str, list[str]]:
        gen = self._current()
        with gen.guard:
            return {n: sorted(o) for n, o in sorted(gen.names.items()) if len(o) > 1}

    @property
    def errors(self) -> dict[str, str]:
        """Sources whose newest run could not be attached, with the reason."""
        with self._mutex:
            return {source: message for source, (_path, message) in sorted(self._failed.items())}

    @property
    def sources(self) -> dict[str, Path]:
        gen = self._current()
        with gen.guard:
            return {s: state.run_path for s, state in sorted(gen.sources.items())}

    def _current(self) -> Generation:
        with self._mutex:
            return self._gen

    def reap(self) -> list[str]:
        """Detach retired runs nobody reads any more (the serving loop calls this each tick)."""
        with self._sync_lock:
            return self._gen.reap()

    def close(self) -> None:
        with self._sync_lock, self._mutex:
            self._gen.close_when_idle()
