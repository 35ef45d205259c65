"""Hostile requests through the HTTP API: reading another source's tables by every route.

The instance serves csv sources `alpha` (granted to the analyst) and `beta` (not
granted; its values are `TOPSECRET-...`) -- the same layout as the engine-level
suite, so its ~60 hostile queries run here unchanged through POST /api/query in
JSON, Arrow and CSV. Each must be refused with the engine's code and its HTTP
status, and no answer may carry beta's values, file system paths or internal
database names. Catalog, manifest and download must hide beta the same way, and
the server must be healthy (and the catalog still locked) afterwards.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from agnes.engine.query import HTTP_STATUS
from tests.conftest import create_user, login
from tests.security.test_hostile_queries import HOSTILE
from tests.serving_helpers import SECRET, load_sources

ARROW = "application/vnd.apache.arrow.stream"
_PATH = re.compile(r"(?:/[\w.\-]+){2,}")
SOURCES = {
    "alpha": {"orders.csv": b"id,customer_id,amount\n1,10,9.5\n2,11,20.0\n3,10,3.25\n4,12,7.0\n",
              "customers.csv": b"id,name\n10,Ann\n11,Bob\n12,Cid\n", "shared.csv": b"id,origin\n1,alpha\n"},
    "beta": {"salaries.csv": f"id,salary\n1,{SECRET}-1\n2,{SECRET}-2\n".encode(),
             "shared.csv": f"id,origin\n1,{SECRET}-shared\n".encode(), "vault.csv": f"id,code\n7,{SECRET}-vault\n".encode()},
}


@pytest.fixture
async def analyst(client, admin_token, auth):
    await load_sources(client, admin_token, sample=False, csv=SOURCES)
    user = await create_user(client, admin_token, "analyst@example.com", "analyst")
    resp = await client.post("/api/admin/grants", json={"user_id": user["id"], "target": "alpha.*"},
                             headers=auth(admin_token))
    assert resp.status_code == 200, resp.text
    return auth(await login(client, "analyst@example.com", "another-long-passphrase"))


def places(client) -> dict[str, str]:
    catalog = client.app.state.instance.serving.catalog
    beta = catalog.sources["beta"]
    x_beta = catalog.execute_readonly("SELECT database_name FROM duckdb_databases() WHERE database_name LIKE "
                                      "'\\_x\\_beta%' ESCAPE '\\'").column(0)[0].as_py()
    return {"beta_parquet": str(beta / "data" / "salaries.parquet"), "beta_db": str(beta / "extract.duckdb"),
            "extracts": str(catalog.extracts_dir), "x_beta": x_beta}


def assert_clean(text: str, where: dict[str, str]) -> None:
    shown = text.replace("/schema/openapi.json", "").replace("/api/", "")
    assert not _PATH.search(shown), shown
    for leak in (SECRET, "_x_", "_r_", where["extracts"], "extract.duckdb", ".parquet"):
        assert leak not in shown, (leak, shown)


async def test_every_hostile_query_is_refused_in_every_format(client, analyst, admin_token, auth):
    where = places(client)
    wrong = []
    for name, template, code in HOSTILE:
        for accept in (None, ARROW, "text/csv"):
            headers = {**analyst, **({"Accept": accept} if accept else {})}
            resp = await client.post("/api/query", json={"sql": template.format(**where)}, headers=headers)
            body = resp.json().get("error", {}) if resp.headers.get("content-type") == "application/json" else {}
            if resp.status_code != HTTP_STATUS[code] or body.get("code") != code or not body.get("hint"):
                wrong.append((name, accept, resp.status_code, body.get("code"), resp.text[:200]))
                continue
            assert_clean(resp.text, where)
    assert not wrong, wrong
    await healthy_afterwards(client, analyst, where)


async def healthy_afterwards(client, analyst, where):
    assert (await client.get("/api/health")).json()["checks"]["catalog"]["status"] == "ok"
    ok = await client.post("/api/query", json={"sql": "SELECT sum(amount) AS s FROM alpha.orders"}, headers=analyst)
    assert ok.status_code == 200 and ok.json()["rows"] == [[39.75]], ok.text
    catalog = client.app.state.instance.serving.catalog
    locked = catalog.execute_readonly("SELECT current_setting('enable_external_access') AS a, "
                                      "current_setting('lock_configuration') AS l").to_pylist()
    assert locked == [{"a": False, "l": True}]
    assert not await asyncio.to_thread(written, Path(where["extracts"]))


def written(extracts: Path) -> bool:
    return bool(list(extracts.rglob("pwned*"))) or (extracts / "dump").exists()


async def test_catalog_manifest_and_download_hide_other_tables(client, analyst):
    where = places(client)
    listed = (await client.get("/api/catalog/tables", headers=analyst)).json()
    assert {t["id"] for t in listed["tables"]} == {"alpha.orders", "alpha.customers", "alpha.shared"}
    for query in ("?source=beta", "?q=salaries", f"?q={SECRET}", "?q=vault"):
        assert (await client.get(f"/api/catalog/tables{query}", headers=analyst)).json()["count"] == 0
    manifest = (await client.get("/api/data/manifest", headers=analyst)).json()
    assert {i["id"] for i in manifest["items"]} == {"alpha.orders", "alpha.customers", "alpha.shared"}
    attempts = [
        ("/api/catalog/tables/beta.salaries", 404), ("/api/catalog/tables/beta.vault", 404),
        ("/api/catalog/tables/BETA.SALARIES", 404), ('/api/catalog/tables/alpha.orders"--', 404),
        ("/api/data/beta.salaries/download", 404), ("/api/data/beta.shared/download", 404),
        ("/api/data/beta.salaries.parquet/download", 404), ("/api/data/beta/download", 404),
        ("/api/data/..%2F..%2Fetc%2Fpasswd/download", 404),
        ("/api/data/beta%2Fcurrent%2Fdata%2Fsalaries.parquet/download", 404),
        (f"/api/data/{where['beta_parquet'].replace('/', '%2F')}/download", 404),
        ("/api/data/alpha.orders%00/download", 404), ("/api/data/../../etc/passwd/download", 404),
    ]
    for path, status in attempts:
        resp = await client.get(path, headers=analyst)
        assert resp.status_code == status, (path, resp.status_code, resp.text[:200])
        assert resp.json()["error"]["hint"], path
        assert_clean(resp.text, where)
    tagged = await client.get("/api/data/beta.salaries/download", headers={**analyst, "If-None-Match": "*"})
    assert tagged.status_code == 404  # a wildcard ETag must not turn into a 304 that confirms the table exists
    await healthy_afterwards(client, analyst, where)


async def test_revoking_takes_effect_at_once(client, analyst, admin_token, auth):
    assert (await client.post("/api/query", json={"sql": "SELECT count(*) FROM alpha.orders"},
                              headers=analyst)).status_code == 200
    users = (await client.get("/api/users", headers=auth(admin_token))).json()["items"]
    uid = next(u["id"] for u in users if u["email"] == "analyst@example.com")
    resp = await client.request("DELETE", "/api/admin/grants", json={"user_id": uid, "target": "alpha.*"},
                                headers=auth(admin_token))
    assert resp.status_code == 204
    refused = await client.post("/api/query", json={"sql": "SELECT count(*) FROM alpha.orders"}, headers=analyst)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "table_not_found"
    assert (await client.get("/api/data/alpha.orders/download", headers=analyst)).status_code == 404
    assert (await client.get("/api/data/manifest", headers=analyst)).json()["count"] == 0


async def test_health_names_no_table_path_or_error_text_to_non_admins(client, analyst, admin_token, auth):
    """Anyone may read /api/health (load balancers, the smoke test): only an admin's answer names
    tables (a name shared by two sources), the data folder or raw error text."""
    data_dir = str(client.app.state.instance.settings.data_dir)
    for who in ({}, analyst):
        body = (await client.get("/api/health", headers=who)).json()
        shown = str(body)
        assert "shared" not in shown and data_dir not in shown, shown
        assert any("GET /api/health with an admin's token" in w for w in body["warnings"]), body["warnings"]
        assert body["checks"]["data_dir"]["detail"] == "the data folder is writable"
    admin = (await client.get("/api/health", headers=auth(admin_token))).json()
    assert any("'shared' exists in sources alpha, beta" in w for w in admin["warnings"]), admin["warnings"]
    assert admin["checks"]["data_dir"]["detail"] == f"{data_dir} is writable"
