"""The keboola connector as a real subprocess against the local Keboola Storage API server.

Typed parquet from column metadata, sliced and unsliced exports, per-column
type problems, incremental merge by primary key, and per-table failures
(404, job error, 429 with Retry-After, bad token) that never fail the others.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from contract_tests import validate_extract

from agnes.devtools.keboola_server import KeboolaData
from agnes.extract.keboola.load import CURSOR_KEY, previous_state
from tests.connectors.keboola.support import customers_table, keboola_server, orders_table, run_keboola

T0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)


def rows(path: Path, order: str = "id") -> list[tuple]:
    table = pq.read_table(path).sort_by(order)
    return [tuple(r.values()) for r in table.to_pylist()]


def types(path: Path) -> dict[str, str]:
    return {r[0]: r[1] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()}


@pytest.fixture
def data(tmp_path: Path) -> KeboolaData:
    d = KeboolaData(tmp_path / "kbc")
    orders_table(d, at=T0)
    customers_table(d, at=T0)
    return d


@pytest.mark.parametrize("sliced", [True, False], ids=["sliced", "unsliced"])
async def test_every_table_is_typed_parquet_that_meets_the_contract(data: KeboolaData, tmp_path: Path,
                                                                    sliced: bool) -> None:
    with keboola_server(data.root, sliced=sliced, slice_rows=1) as server:
        result = await run_keboola(server.url, tmp_path / "out")
        requests = list(server.faults.requests)
    assert result.status == "succeeded", result.error
    assert validate_extract(tmp_path / "out", source_name="kbc").ok
    assert sorted(result.tables_done) == ["in_c_crm_customers", "in_c_crm_orders"]
    orders = tmp_path / "out" / "data" / "in_c_crm_orders.parquet"
    assert types(orders) == {"id": "BIGINT", "amount": "DECIMAL(12,2)", "paid": "BOOLEAN", "ordered_on": "DATE",
                             "created_at": "TIMESTAMP", "created_tz": "TIMESTAMP WITH TIME ZONE", "note": "VARCHAR"}
    got = rows(orders)
    assert [r[:4] for r in got] == [(1, Decimal("12.50"), True, datetime(2024, 1, 2).date()),
                                    (2, Decimal("7.25"), False, datetime(2024, 1, 3).date()),
                                    (3, Decimal("100.00"), True, datetime(2024, 2, 1).date())]
    assert got[0][4] == datetime(2024, 1, 2, 10) and got[2][4] is None  # empty = NULL for typed columns
    assert got[0][5] == datetime(2024, 1, 2, 8, tzinfo=UTC) and got[2][6] == 'quote " and, comma'
    assert types(tmp_path / "out" / "data" / "in_c_crm_customers.parquet")["score"] == "DOUBLE"
    exports = [r for r in requests if r[1].endswith("/export-async")]
    assert exports and all(r[0] == "POST" and r[2].get("gzip") == ["1"] for r in exports)  # form-encoded
    con = duckdb.connect(str(tmp_path / "out" / "extract.duckdb"), read_only=True)
    assert con.execute("SELECT description FROM _meta WHERE table_name = 'in_c_crm_orders'").fetchone() == (
        "Orders from the CRM",)
    con.close()


async def test_values_that_do_not_parse_are_reported_per_column_never_nulled(data: KeboolaData,
                                                                              tmp_path: Path) -> None:
    data.put_table("in.c-crm.bad", ["id", "qty", "day"], [[1, "5", "2024-01-01"], [2, "five", "2024-01-02"],
                                                          [3, "", "someday"]],
                   types={"id": "INTEGER", "qty": "INTEGER", "day": "DATE"}, primary_key=["id"])
    with keboola_server(data.root) as server:
        result = await run_keboola(server.url, tmp_path / "out", tables=["in.c-crm.bad"])
    assert result.status == "succeeded", result.error
    warnings = {e["column"]: e for e in result.events if e["event"] == "table_warning"}
    assert warnings["qty"]["bad_values"] == 1 and warnings["qty"]["example"] == "five"
    assert warnings["day"]["declared"] == "DATE" and warnings["day"]["example"] == "someday"
    assert "in.c-crm.bad" in warnings["qty"]["message"] and warnings["qty"]["kept_as"] == "VARCHAR"
    path = tmp_path / "out" / "data" / "in_c_crm_bad.parquet"
    assert types(path) == {"id": "BIGINT", "qty": "VARCHAR", "day": "VARCHAR"}
    assert [r[1] for r in rows(path)] == ["5", "five", None]  # every value kept


async def test_incremental_export_merges_by_primary_key(data: KeboolaData, tmp_path: Path) -> None:
    orders_table(data, at=T0 - timedelta(days=1))
    with keboola_server(data.root, slice_rows=2) as server:
        first = await run_keboola(server.url, tmp_path / "run1", tables=["in.c-crm.orders"])
        assert first.status == "succeeded" and first.tables_done["in_c_crm_orders"]["mode"] == "full"
        prev = tmp_path / "run1" / "data" / "in_c_crm_orders.parquet"
        assert pq.read_schema(prev).metadata[CURSOR_KEY.encode()].startswith(b"2024-04-30T08:00:00")

        data.upsert_rows("in.c-crm.orders", [[2, "8.00", "true", "2024-01-03", "", "", "changed"],
                                            [4, "1.00", "false", "2024-03-01", "", "", "new"]],
                         at=T0)
        second = await run_keboola(server.url, tmp_path / "run2", tables=["in.c-crm.orders"],
                                   previous=tmp_path / "run1")
        since = [r[2].get("changedSince") for r in server.faults.requests if r[1].endswith("/export-async")]
        assert second.status == "succeeded", second.error
        done = second.tables_done["in_c_crm_orders"]
        # the previous cursor minus the 600 s safety window: rows changed at the cursor come again
        assert since == [None, ["2024-04-30T07:50:00+00:00"]]
        assert done["mode"] == "incremental" and done["rows"] == 4
        merged = rows(tmp_path / "run2" / "data" / "in_c_crm_orders.parquet")
        assert [(r[0], r[6]) for r in merged] == [(1, "first"), (2, "changed"), (3, 'quote " and, comma'),
                                                  (4, "new")]

        data.upsert_rows("in.c-crm.orders", [[1, "9.99", "true", "2024-01-02", "", "", "again"]],
                         at=T0 + timedelta(days=1))
        third = await run_keboola(server.url, tmp_path / "run3", tables=["in.c-crm.orders"],
                                  previous=tmp_path / "run2")
        done = third.tables_done["in_c_crm_orders"]
        assert done["changed_since"] == "2024-05-01T07:50:00+00:00"
        assert done["kept_from_previous"] == 1 and done["rows"] == 4  # id 3 only from the previous data
        merged = rows(tmp_path / "run3" / "data" / "in_c_crm_orders.parquet")
        assert [(r[0], r[1], r[6]) for r in merged] == [
            (1, Decimal("9.99"), "again"), (2, Decimal("8.00"), "changed"),
            (3, Decimal("100.00"), 'quote " and, comma'), (4, Decimal("1.00"), "new")]

        full = await run_keboola(server.url, tmp_path / "run4", tables=["in.c-crm.orders"],
                                 previous=tmp_path / "run3", config={"incremental": False})
        assert full.tables_done["in_c_crm_orders"]["mode"] == "full"
        assert len(rows(tmp_path / "run4" / "data" / "in_c_crm_orders.parquet")) == 4

        # full reload on demand: once for data last fully exported before the given time, then incremental again
        state = previous_state(tmp_path / "run3" / "data" / "in_c_crm_orders.parquet")
        assert state["full_loaded_at"] == previous_state(prev)["full_loaded_at"]  # incremental merges keep it
        asked = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        modes = []
        for run, before in (("run5", "run3"), ("run6", "run5")):
            again = await run_keboola(server.url, tmp_path / run, tables=["in.c-crm.orders"],
                                      previous=tmp_path / before, config={"full_reload_before": asked})
            modes.append(again.tables_done["in_c_crm_orders"]["mode"])
        assert modes == ["full", "incremental"]


async def test_a_failing_table_names_keboolas_message_and_the_others_go_on(data: KeboolaData,
                                                                           tmp_path: Path) -> None:
    data.put_table("in.c-crm.slow", ["id"], [[1]], types={"id": "INTEGER"})
    with keboola_server(data.root) as server:
        server.faults.job_error["in.c-crm.customers"] = "Snowflake warehouse is suspended"
        server.faults.rate_limit["in.c-crm.slow"] = 2  # two 429s with Retry-After: 0, then it works
        result = await run_keboola(server.url, tmp_path / "out",
                                   tables=["in.c-crm.customers", "in.c-crm.orders", "in.c-crm.gone", "in.c-crm.slow"])
    assert result.status == "succeeded", result.error  # exit 0: the job marks the run partial
    assert sorted(result.tables_done) == ["in_c_crm_orders", "in_c_crm_slow"]
    failed = result.tables_failed
    assert "in.c-crm.customers" in failed["in_c_crm_customers"]["error"]
    assert "Snowflake warehouse is suspended" in failed["in_c_crm_customers"]["error"]
    assert "404" in failed["in_c_crm_gone"]["error"] and 'The table "in.c-crm.gone" was not found' in \
        failed["in_c_crm_gone"]["error"]
    assert validate_extract(tmp_path / "out", source_name="kbc").ok


async def test_rate_limit_that_does_not_end_fails_only_that_table(data: KeboolaData, tmp_path: Path) -> None:
    with keboola_server(data.root) as server:
        server.faults.rate_limit["in.c-crm.orders"] = 100
        result = await run_keboola(server.url, tmp_path / "out", tables=["in.c-crm.orders", "in.c-crm.customers"])
    assert result.status == "succeeded"
    assert "rate limit (429)" in result.tables_failed["in_c_crm_orders"]["error"]
    assert list(result.tables_done) == ["in_c_crm_customers"]


async def test_a_bad_token_fails_the_run_with_keboolas_answer(data: KeboolaData, tmp_path: Path) -> None:
    with keboola_server(data.root) as server:
        result = await run_keboola(server.url, tmp_path / "out", tables=["in.c-crm.orders"], token="wrong-token")
        nothing = await run_keboola(server.url, tmp_path / "out2", token="wrong-token")
    assert result.status == "failed" and result.returncode == 1
    assert "refused the Storage API token (401): Invalid access token" in result.tables_failed["in_c_crm_orders"][
        "error"]
    assert nothing.status == "failed" and "cannot list the tables" in "\n".join(nothing.stderr_tail)


async def test_two_ids_that_normalise_alike_are_never_merged(data: KeboolaData, tmp_path: Path) -> None:
    data.put_table("in.c-crm.a-b", ["id"], [[1]])
    data.put_table("in.c-crm.a_b", ["id"], [[2]])
    with keboola_server(data.root) as server:
        result = await run_keboola(server.url, tmp_path / "out")
    assert "never merged" in result.tables_failed["in_c_crm_a_b"]["error"]
    assert sorted(result.tables_done) == ["in_c_crm_customers", "in_c_crm_orders"]


async def test_a_stuck_export_times_out_a_403_fails_its_table_and_tables_export_concurrently(
        data: KeboolaData, tmp_path: Path) -> None:
    data.put_table("in.c-crm.secret", ["id"], [[1]], types={"id": "INTEGER"})
    with keboola_server(data.root) as server:
        server.faults.stuck.add("in.c-crm.customers")  # its export job stays `processing`
        server.faults.forbidden.add("in.c-crm.secret")  # the token may not read it
        runs, overlapped = {}, {}
        for workers in (4, 1):
            server.faults.requests.clear()
            runs[workers] = await run_keboola(server.url, tmp_path / f"out{workers}",
                                              config={"export_timeout_seconds": 2, "export_workers": workers})
            calls = [(m, p) for m, p, _ in server.faults.requests]
            stuck_job = max(j for j, job in server._jobs.items() if job["tableId"] == "in.c-crm.customers")
            stuck_polls = [i for i, call in enumerate(calls) if call == ("GET", f"/v2/storage/jobs/{stuck_job}")]
            orders = calls.index(("POST", "/v2/storage/tables/in.c-crm.orders/export-async"))
            overlapped[workers] = orders < max(stuck_polls)
    for result in runs.values():
        assert result.status == "succeeded", result.error
        assert list(result.tables_done) == ["in_c_crm_orders"]
        stuck = result.tables_failed["in_c_crm_customers"]["error"]
        assert "in.c-crm.customers" in stuck and "did not finish within 2s (last status processing)" in stuck
        forbidden = result.tables_failed["in_c_crm_secret"]["error"]
        assert "table in.c-crm.secret" in forbidden and "refused the Storage API token (403)" in forbidden
    # with 4 workers the orders export starts while the customers job is still polled; with 1 it waits
    assert overlapped == {4: True, 1: False}
