"""The small rules behind jobs: dedupe, cron ticks, owner liveness, carrying tables over."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from contract_tests.validator import validate_extract

from agnes.control.jobs import JobRecord
from agnes.extract import ExtractWriter
from agnes.jobs.carry_over import CarryOverError, carry_over
from agnes.jobs.recovery import PROCESS_TOKEN, owner_id, owner_is_dead
from agnes.services.schedules import due_tick
from agnes.services.sync import covers


def job(sources: list[str], tables: list[str] | None) -> JobRecord:
    return JobRecord(id=1, kind="sync", status="running", sources=sources, tables=tables, trigger="api",
                     requested_by=None, created_at="", started_at=None, finished_at=None, heartbeat_at=None,
                     owner=None, cancel_requested=False, error=None, log_tail="")


def test_covers() -> None:
    assert covers(job(["a", "b"], None), ["a"], None)
    assert covers(job(["a", "b"], None), ["a"], ["t"])
    assert not covers(job(["a"], None), ["a", "b"], None)
    assert covers(job(["a"], ["t", "u"]), ["a"], ["t"])
    assert not covers(job(["a"], ["t"]), ["a"], None)  # a full sync is more than a subset job
    assert not covers(job(["a"], ["t"]), ["a"], ["t", "v"])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_due_tick_collapses_missed_ticks_and_uses_utc() -> None:
    assert due_tick("0 3 * * *", at("2026-01-01 03:00"), at("2026-01-01 12:00")) is None
    assert due_tick("0 3 * * *", at("2026-01-01 03:00"), at("2026-01-02 03:00")) == at("2026-01-02 03:00")
    # three days down: one run for the latest tick, not three
    assert due_tick("0 3 * * *", at("2026-01-01 03:00"), at("2026-01-04 10:00")) == at("2026-01-04 03:00")
    assert due_tick("*/15 * * * *", at("2026-01-01 10:00"), at("2026-01-01 10:14:59")) is None
    with pytest.raises(ValueError):
        due_tick("every day", at("2026-01-01 00:00"), at("2026-01-02 00:00"))


def test_owner_liveness() -> None:
    host = socket.gethostname()
    assert not owner_is_dead(owner_id("server"))  # this very process
    assert owner_is_dead(f"server:{os.getpid()}@{host}#other")  # same pid, another process generation
    assert owner_is_dead(f"worker:999999999@{host}#{PROCESS_TOKEN}")  # no such pid here
    assert not owner_is_dead("worker:1@some-other-host#abc")  # unknown: the heartbeat decides
    assert owner_is_dead(None)


def write_run(folder: Path, tables: dict[str, int], *, base: str | None = None) -> Path:
    with ExtractWriter(folder) as w:
        for name, value in tables.items():
            w.add_arrow(name, pa.table({"v": [value]}), extracted_at=datetime(2026, 1, value, tzinfo=UTC))
        if base:
            w.con.execute(f"CREATE TABLE {base} AS SELECT 42 AS v")
            w._tables[base] = w._tables[next(iter(tables))].__class__(base, None, 1, 0, datetime(2026, 1, 9),
                                                                       "local", None)
    return folder


def test_carry_over_keeps_failed_and_unrequested_tables(tmp_path: Path) -> None:
    previous = write_run(tmp_path / "prev", {"a": 1, "b": 1, "c": 1}, base="d")
    staging = write_run(tmp_path / "new", {"a": 2})
    assert carry_over(staging, previous, set(), None) == []  # a full sync that lost b and c: they are gone
    carried = carry_over(staging, previous, {"b"}, None)
    assert [c.table for c in carried] == ["b"] and carried[0].extracted_at == "2026-01-01T00:00:00"
    carried = carry_over(staging, previous, set(), ["a"])
    assert [c.table for c in carried] == ["c", "d"]
    report = validate_extract(staging, source_name="src")
    assert report.ok, report.violations
    assert duckdb.sql(f"SELECT v FROM '{staging}/data/b.parquet'").fetchall() == [(1,)]
    assert os.stat(staging / "data" / "b.parquet").st_ino == os.stat(previous / "data" / "b.parquet").st_ino
    con = duckdb.connect(str(staging / "extract.duckdb"), read_only=True)
    assert con.execute("SELECT v FROM d").fetchall() == [(42,)]
    con.close()


def test_carry_over_refuses_remote_tables(tmp_path: Path) -> None:
    previous = write_run(tmp_path / "prev", {"a": 1})
    con = duckdb.connect(str(previous / "extract.duckdb"))
    con.execute("UPDATE _meta SET query_mode = 'remote'")
    con.close()
    staging = write_run(tmp_path / "new", {"b": 2})
    with pytest.raises(CarryOverError, match="remote"):
        carry_over(staging, previous, {"a"}, None)
