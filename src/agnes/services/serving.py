"""Keeps this process's serving catalog equal to what is published.

Jobs (in this process or an arq worker) publish runs and bump the control
plane's publication counter; this loop reads that one integer every tick and,
when it moved, lets the catalog re-attach only the sources whose run changed.
The first load runs in the background so the server answers at once; health
shows `catalog: loading` until it is done.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agnes.control import health_errors, publications
from agnes.engine.catalog import ServingCatalog, SyncReport
from agnes.engine.connection import ConnectionPolicy
from agnes.engine.publish import recorded_runs

if TYPE_CHECKING:
    from agnes.services.instance import Instance

log = logging.getLogger("agnes.serving")
ATTACH_FAILED = "extract_attach_failed"


@dataclass
class ServingState:
    loaded: bool = False
    seen_counter: int = -1
    last_report: SyncReport | None = None
    last_error: str | None = None
    reported: dict[str, str] = field(default_factory=dict)  # source -> message already in health


class CatalogService:
    def __init__(self, instance: Instance, *, interval: float = 0.5) -> None:
        settings = instance.settings
        analytics = settings.analytics_dir
        policy = ConnectionPolicy(threads=settings.query.threads, memory_limit=settings.query.memory_limit,
                                  temp_directory=analytics / "tmp", extension_directory=analytics / "extensions")
        self.instance = instance
        self.interval = interval
        self.catalog = ServingCatalog(settings.extracts_dir, policy, environ=os.environ)
        self.state = ServingState()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> SyncReport | None:
        """Re-attach changed sources if the publication counter moved (or when forced)."""
        async with self._lock:
            async with self.instance.control.read() as conn:
                counter = await publications.counter(conn)
                if counter == self.state.seen_counter and not force:
                    return None
                # The control plane decides what is served: runs/<publications.run_id>, never what the
                # `current` pointer says (it is switched after the record and may lag after a kill),
                # and nothing for a run left on disk by a source deleted mid-way or never recorded.
                recorded = {p.source: p.run_id for p in await publications.all_sources(conn)}
            runs = await asyncio.to_thread(recorded_runs, self.instance.settings.extracts_dir, recorded)
            report = await asyncio.to_thread(self.catalog.sync_sources, runs)
            self.state.seen_counter = counter
            self.state.last_report = report
            self.state.loaded = True
            await self._report_errors(report)
            if report.attached or report.detached:
                log.info("catalog: attached %s, detached %s in %.0f ms", report.attached, report.detached,
                         report.elapsed_ms)
            return report

    async def _report_errors(self, report: SyncReport) -> None:
        """One health error per broken run (not one per tick); resolved when the source attaches."""
        async with self.instance.control.transaction() as conn:
            for source, message in report.errors.items():
                if self.state.reported.get(source) != message:
                    await health_errors.resolve(conn, source=source, code=ATTACH_FAILED)
                    await health_errors.raise_error(conn, code=ATTACH_FAILED, source=source, message=message)
                    self.state.reported[source] = message
            for source in [s for s in self.state.reported if s not in report.errors]:
                if source in report.attached or source in report.detached:
                    await health_errors.resolve(conn, source=source, code=ATTACH_FAILED)
                    del self.state.reported[source]

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.refresh()
                await asyncio.to_thread(self.catalog.reap)
                self.state.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — keep serving the last good catalog; health shows it
                self.state.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("catalog refresh failed")
            await asyncio.sleep(max(0.05, self.interval - (time.monotonic() - started)))

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="agnes-catalog-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await asyncio.to_thread(self.catalog.close)

    def health(self, *, detailed: bool = True) -> tuple[str, str]:
        """(check status, detail) for /api/health; `detailed` (admins) adds error text and source names."""
        if self.state.last_error:
            why = f": {self.state.last_error}" if detailed else " (an admin's /api/health shows why)"
            return "warn", f"catalog refresh failing, serving the last good state{why}"
        if not self.state.loaded:
            return "ok", "catalog is loading (first build in progress; tables appear when it is done)"
        tables = len(self.catalog.sources)
        broken = self.catalog.errors
        if broken:
            which = ", ".join(sorted(broken)) if detailed else f"{len(broken)} source(s)"
            return "warn", f"{tables} sources served; not attached: {which}"
        return "ok", f"{tables} sources served (publication {self.state.seen_counter})"

    def warnings(self) -> list[str]:
        return [
            f"Table name '{name}' exists in sources {', '.join(owners)}: use the qualified ids "
            + ", ".join(f"{o}.{name}" for o in owners) + " (the bare name is not served)."
            for name, owners in self.catalog.collisions.items()
        ]
