"""What the sync gets from the sources service: connector_run_spec and register_published_tables.

Real connectors run as subprocesses, their output is published for real, and
the registry learns the columns from the published run.
"""

from __future__ import annotations

import dataclasses

import duckdb
import pytest
from litestar import Litestar

from agnes.app import create_app
from agnes.engine.publish import new_staging_dir, publish
from agnes.errors import AgnesError
from agnes.extract.runner import run_connector
from agnes.services import source_types
from agnes.services.sources import connector_run_spec, register_published_tables
from tests.api.source_helpers import sql

SECRET = "custom-secret-value-0123456789"  # noqa: S105 - test value


@pytest.fixture
def app(make_settings, custom_dir) -> Litestar:
    return create_app(make_settings(AGNES_CUSTOM_CONNECTORS_DIR=str(custom_dir)))


async def sync_once(instance, source):
    """What a sync does with the spec: run, publish, register."""
    spec = await connector_run_spec(instance, source, None)
    staging = new_staging_dir(instance.settings.extracts_dir, source)
    result = await run_connector(spec.connector, staging, config=spec.config, secrets=spec.secrets_env, timeout=120,
                                 tables=spec.tables, source_name=source, state_dir=spec.state_dir)
    assert result.ok, (result.error, result.stderr_tail)
    run = publish(instance.settings.extracts_dir, source, staging)
    outcome = await register_published_tables(instance, source, [{"name": t} for t in result.tables_done])
    return spec, run, outcome


async def test_csv_spec_run_publish_register_and_drift(client, admin_token, auth, app, data_dir):
    h = auth(admin_token)
    await client.post("/api/admin/configure", json={"data_source": "csv"}, headers=h)
    await client.post("/api/admin/uploads?source=csv", headers=h, files={"file": ("orders.csv", b"id,total\n1,2.5\n")})
    instance = app.state.instance
    spec, _, outcome = await sync_once(instance, "csv")
    assert (spec.type, spec.connector.name, spec.extracts_all, spec.tables, spec.secrets_env) == (
        "csv", "csv", True, None, {})
    assert spec.config == {"files_dir": str(data_dir / "uploads" / "csv")}
    assert spec.state_dir == data_dir / "state" / "connectors" / "csv"
    assert [t.id for t in outcome.registered] == ["csv.orders"]
    table = (await client.get("/api/admin/tables/csv.orders", headers=h)).json()
    assert table["columns"] == [{"name": "id", "type": "BIGINT"}, {"name": "total", "type": "DOUBLE"}]
    assert table["description"] == "CSV file orders.csv"
    # discovery of the staged file agrees with what was published: no drift
    again = (await client.post("/api/admin/discover-and-register?source=csv", headers=h)).json()["sources"][0]
    assert [t["id"] for t in again["skipped"]] == ["csv.orders"] and again["drifted"] == []

    await client.post("/api/admin/uploads?source=csv", headers=h,
                      files={"file": ("orders.csv", b"id,total,note\n1,2.5,x\n")})
    _, _, changed = await sync_once(instance, "csv")
    assert [(d.id, d.added) for d in changed.drifted] == [("csv.orders", ["note"])]
    _, latest, same = await sync_once(instance, "csv")
    assert same.drifted == [] and [t.id for t in same.skipped] == ["csv.orders"]
    with duckdb.connect() as con:
        assert con.execute(f"SELECT note FROM read_parquet('{latest.path}/data/orders.parquet')").fetchall() == [
            ("x",)]


async def test_custom_spec_delivers_secrets_only_through_env(client, admin_token, auth, app):
    h = auth(admin_token)
    resp = await client.post("/api/admin/configure", headers=h, json={
        "data_source": "custom", "connector": "my_api", "name": "crm", "options": {"base_url": "https://x.test"},
        "secrets": {"MY_API_KEY": SECRET}})
    assert resp.status_code == 200, resp.text
    instance = app.state.instance
    spec = await connector_run_spec(instance, "crm", ["items"])
    assert spec.connector.origin == "custom" and spec.config == {"base_url": "https://x.test"}
    assert spec.secrets_env == {"MY_API_KEY": SECRET} and spec.tables == ["items"]
    assert SECRET not in repr(spec) and "MY_API_KEY" in repr(spec)
    _, run, outcome = await sync_once(instance, "crm")
    assert [t.id for t in outcome.registered] == ["crm.items"]
    with duckdb.connect() as con:
        row = con.execute(f"SELECT base_url, key_length FROM read_parquet('{run.path}/data/items.parquet')").fetchone()
    assert row == ("https://x.test", len(SECRET))


async def test_spec_errors_and_types_that_extract_only_registered_tables(client, admin_token, auth, app,
                                                                         monkeypatch):
    instance = app.state.instance
    with pytest.raises(AgnesError) as missing:
        await connector_run_spec(instance, "nope", None)
    assert missing.value.code == "source_not_found"
    await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=auth(admin_token))
    spec = await connector_run_spec(instance, "sample", None)
    assert spec.connector.origin == "builtin" and spec.tables is None and spec.extracts_all

    # A type like keboola: extracts only what is registered, by native id.
    picky = dataclasses.replace(source_types.SOURCE_TYPES["external"], name="picky", extracts_all=False)
    monkeypatch.setitem(source_types.SOURCE_TYPES, "picky", picky)
    await sql(app, "INSERT INTO sources (name, type, created_at, updated_at) VALUES ('kbc', 'picky', 'x', 'x')")
    first = await connector_run_spec(instance, "kbc", None)
    assert first.tables == [] and first.connector is None and not first.extracts_all
    await sql(app, "INSERT INTO registered_tables (id, source, name, native_id, registered_at, updated_at) "
                   "VALUES ('kbc.in_c_crm_orders', 'kbc', 'in_c_crm_orders', 'in.c-crm.orders', 'x', 'x')")
    assert (await connector_run_spec(instance, "kbc", None)).tables == ["in.c-crm.orders"]
    assert (await connector_run_spec(instance, "kbc", ["in_c_crm_orders"])).tables == ["in.c-crm.orders"]
    with pytest.raises(AgnesError) as unknown:
        await connector_run_spec(instance, "kbc", ["orders"])
    assert unknown.value.code == "table_not_found" and "discover-and-register" in unknown.value.hint
