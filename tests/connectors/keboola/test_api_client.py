"""The Storage API client and the type mapping, against the local Keboola server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agnes.devtools.keboola_server import KeboolaData
from agnes.extract.keboola.api import KeboolaError, StorageApi, storage_base
from agnes.extract.keboola.coltypes import column_type
from tests.connectors.keboola.support import TOKEN, customers_table, keboola_server, orders_table


@pytest.fixture
def data(tmp_path: Path) -> KeboolaData:
    d = KeboolaData(tmp_path / "kbc")
    orders_table(d)
    customers_table(d)
    return d


def meta(*entries: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v, "provider": p} for k, v, p in entries]


def test_types_follow_kbc_metadata_with_the_user_provider_first() -> None:
    base = "KBC.datatype.basetype"
    assert column_type(meta((base, "INTEGER", "storage"))) == "BIGINT"
    assert column_type(meta((base, "INTEGER", "storage"), (base, "STRING", "user"))) == "VARCHAR"
    assert column_type(meta((base, "NUMERIC", "storage"), ("KBC.datatype.length", "10,3", "storage"))) == \
        "DECIMAL(10,3)"
    assert column_type(meta((base, "NUMERIC", "storage"))) == "DECIMAL(38,9)"
    assert column_type(meta((base, "NUMERIC", "storage"), ("KBC.datatype.length", "76,2", "storage"))) == "DOUBLE"
    assert column_type(meta((base, "TIMESTAMP", "s"), ("KBC.datatype.type", "TIMESTAMP_TZ", "s"))) == \
        "TIMESTAMP WITH TIME ZONE"
    assert column_type(meta((base, "TIMESTAMP", "s"), ("KBC.datatype.type", "TIMESTAMP_NTZ", "s"))) == "TIMESTAMP"
    assert [column_type(meta((base, b, "s"))) for b in ("FLOAT", "BOOLEAN", "DATE", "STRING", "GEOGRAPHY")] == [
        "DOUBLE", "BOOLEAN", "DATE", "VARCHAR", "VARCHAR"]
    assert column_type(None) == "VARCHAR"


def test_stack_url_gets_v2_storage_once() -> None:
    assert storage_base("https://connection.keboola.com/") == "https://connection.keboola.com/v2/storage"
    assert storage_base("https://x.keboola.com/v2/storage") == "https://x.keboola.com/v2/storage"
    with pytest.raises(KeboolaError, match="must start with https://"):
        storage_base("connection.keboola.com")


def test_the_token_travels_only_as_a_header(data: KeboolaData) -> None:
    with keboola_server(data.root) as server:
        with StorageApi(server.url, TOKEN) as api:
            assert [b["id"] for b in api.buckets()] == ["in.c-crm"]
        in_url = httpx.get(f"{server.url}/v2/storage/buckets", params={"token": TOKEN})
        assert in_url.status_code == 401  # like Keboola: a token in the URL is no token


def test_429_waits_retry_after_then_succeeds_and_gives_up_when_too_long(data: KeboolaData) -> None:
    slept: list[float] = []
    with keboola_server(data.root) as server:
        server.faults.rate_limit["in.c-crm.orders"] = 2
        server.faults.retry_after = "3"
        with StorageApi(server.url, TOKEN, sleep=slept.append) as api:
            info = api.export("in.c-crm.orders")
        assert info["isSliced"] and slept[:2] == [3.0, 3.0]

        server.faults.rate_limit["in.c-crm.orders"] = 1
        server.faults.retry_after = "600"
        with StorageApi(server.url, TOKEN, sleep=slept.append) as api, pytest.raises(KeboolaError) as e:
            api.export("in.c-crm.orders")
    assert e.value.kind == "rate_limited" and "Retry-After '600'" in e.value.message


def test_table_list_falls_back_to_buckets_and_jobs_fail_with_keboolas_message(data: KeboolaData) -> None:
    with keboola_server(data.root) as server:
        server.faults.fail_paths["/v2/storage/tables"] = 501
        with StorageApi(server.url, TOKEN, sleep=lambda s: None) as api:
            tables = api.tables()
            assert sorted(t["id"] for t in tables) == ["in.c-crm.customers", "in.c-crm.orders"]
            assert all(t["columns"] and t["bucket"]["id"] == "in.c-crm" for t in tables)
            server.faults.job_error["in.c-crm.orders"] = "Export failed: warehouse suspended"
            with pytest.raises(KeboolaError) as job:
                api.export("in.c-crm.orders")
            with pytest.raises(KeboolaError) as missing:
                api.table("in.c-crm.nope")
    assert job.value.kind == "job" and "warehouse suspended" in job.value.message
    assert missing.value.kind == "not_found" and "in.c-crm.nope" in missing.value.message


def test_network_failure_is_named_after_retries(tmp_path: Path) -> None:
    from tests.helpers import free_port

    slept: list[float] = []
    with StorageApi(f"http://127.0.0.1:{free_port()}", TOKEN, sleep=slept.append, retries=2) as api, \
            pytest.raises(KeboolaError) as e:
        api.buckets()
    assert e.value.kind == "network" and "cannot reach" in e.value.message and len(slept) == 2


def test_agnes_dev_keboola_server_serves_a_demo_project(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "agnes", "dev", "keboola-server", "--data", str(tmp_path / "kbc"),
                             "--port", str(port), "--token", TOKEN], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/v2/storage" in banner and "in.c-crm.orders" in banner
        deadline = time.monotonic() + 20
        while True:
            try:
                with StorageApi(f"http://127.0.0.1:{port}", TOKEN, retries=0) as api:
                    assert {t["id"] for t in api.tables()} == {"in.c-crm.customers", "in.c-crm.orders"}
                break
            except KeboolaError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def test_a_post_is_never_retried_on_5xx_but_a_get_is(data: KeboolaData) -> None:
    slept: list[float] = []
    with keboola_server(data.root) as server:
        server.faults.fail_paths["/v2/storage/tables/in.c-crm.orders/export-async"] = 503
        server.faults.fail_paths["/v2/storage/buckets"] = 502
        with StorageApi(server.url, TOKEN, sleep=slept.append, retries=2) as api:
            with pytest.raises(KeboolaError) as post:
                api.export("in.c-crm.orders")
            with pytest.raises(KeboolaError) as get:
                api.buckets()
        calls = [(m, p) for m, p, _ in server.faults.requests]
    assert post.value.status == 503 and "503" in post.value.message
    assert calls.count(("POST", "/v2/storage/tables/in.c-crm.orders/export-async")) == 1  # no duplicate export job
    assert calls.count(("GET", "/v2/storage/buckets")) == 3 and get.value.status == 502  # idempotent: retried


def test_403_names_the_table_and_keboolas_message(data: KeboolaData) -> None:
    with keboola_server(data.root) as server:
        server.faults.forbidden.add("in.c-crm.orders")
        with StorageApi(server.url, TOKEN, sleep=lambda s: None) as api, pytest.raises(KeboolaError) as e:
            api.table("in.c-crm.orders")
    assert e.value.kind == "auth" and e.value.status == 403
    assert "table in.c-crm.orders" in e.value.message and "(403)" in e.value.message
    assert "don't have access" in e.value.message


def test_an_export_job_that_never_finishes_times_out(data: KeboolaData) -> None:
    with keboola_server(data.root) as server:
        server.faults.stuck.add("in.c-crm.orders")
        with StorageApi(server.url, TOKEN) as api, pytest.raises(KeboolaError) as e:
            api.export("in.c-crm.orders", timeout=0.5, poll_max=0.1)
        polls = [p for m, p, _ in server.faults.requests if m == "GET" and p.startswith("/v2/storage/jobs/")]
    assert e.value.kind == "job" and "did not finish within 0.5s (last status processing)" in e.value.message
    assert len(polls) >= 2  # polled with backoff until the deadline


def test_table_detail_reports_rows_count(data: KeboolaData) -> None:
    with keboola_server(data.root) as server, StorageApi(server.url, TOKEN) as api:
        assert api.table("in.c-crm.orders")["rowsCount"] == 3
        data.upsert_rows("in.c-crm.orders", [[4, "1.00", "false", "2024-03-01", "", "", "new"]])
        assert api.table("in.c-crm.orders")["rowsCount"] == 4
        assert {t["id"]: t["rowsCount"] for t in api.tables()} == {"in.c-crm.customers": 2, "in.c-crm.orders": 4}
