"""The Tier A example (examples/custom-connectors/sqlite_file) works the way its docs say.

It passes `agnes contract check` when run by hand; mounted the way the documented compose
override mounts ./custom-connectors (read-only, at the custom connectors directory), it is
configured as `data_source: "custom"`, synced by a real job (the connector runs as a
subprocess) and queried through POST /api/query.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from litestar.testing import AsyncTestClient

from agnes.app import create_app
from agnes.settings import BUILTIN_CONNECTORS_DIR
from tests.conftest import bootstrap
from tests.helpers import run_agnes
from tests.serving_helpers import wait_job, wait_served

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom-connectors" / "sqlite_file"
OVERRIDE = ROOT / "deploy" / "compose" / "docker-compose.override.example.yml"


def shop_db(folder: Path) -> Path:
    db = folder / "shop.sqlite"
    with sqlite3.connect(db) as con:
        con.executescript((EXAMPLE / "fixtures" / "shop.sql").read_text())
    con.close()
    return db


def documented_mount() -> tuple[str, str]:
    """(host folder, container folder) of the Tier A mount in the documented compose override."""
    services = yaml.safe_load(OVERRIDE.read_text())["services"]
    mounts = [v for v in services["app"]["volumes"] if ":/app/connectors/custom" in v]
    assert len(mounts) == 1, f"{OVERRIDE} should mount the custom connectors folder once: {services['app']}"
    host, container, *mode = mounts[0].split(":")
    assert mode == ["ro"], "custom connectors are mounted read-only"
    assert mounts[0] in services.get("worker", {}).get("volumes", []), "the worker runs syncs too: mount it there"
    return host, container


def test_the_example_passes_the_contract_check_when_run_by_hand(tmp_path: Path):
    db, out = shop_db(tmp_path), tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGNES_")}
    env.update(AGNES_OUTPUT_DIR=str(out), AGNES_CONFIG_JSON=f'{{"path": "{db}"}}',
               PYTHONPATH=str(ROOT / "src"))
    ran = subprocess.run([sys.executable, "extractor.py"], cwd=EXAMPLE, env=env, capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert '"event": "table_done", "table": "order_lines", "rows": 4' in ran.stdout
    checked = run_agnes(["contract", "check", str(out), "--source", "shop"], tmp_path / "data")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK: the extract meets the contract (2 table(s))" in checked.stdout


def test_a_missing_path_fails_with_what_to_configure(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGNES_")}
    env.update(AGNES_OUTPUT_DIR=str(tmp_path / "out"), AGNES_CONFIG_JSON="{}", PYTHONPATH=str(ROOT / "src"))
    ran = subprocess.run([sys.executable, "extractor.py"], cwd=EXAMPLE, env=env, capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 2 and '"options": {"path"' in ran.stderr and "/api/admin/configure" in ran.stderr


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def mounted(tmp_path: Path) -> Path:
    """`./custom-connectors` as the override mounts it (read-only): the example copied in. A chmod cannot
    make it read-only for root (the tests may run as root), so the fixture checks instead that Agnes
    wrote nothing into it — no __pycache__, no state, no output — as a read-only mount requires."""
    host, container = documented_mount()
    # In the image the mount target IS the default custom connectors directory (no setting needed);
    # outside Docker the same folder is named by AGNES_CUSTOM_CONNECTORS_DIR.
    assert Path(container) == Path("/app/connectors/custom") and BUILTIN_CONNECTORS_DIR.name == "connectors"
    folder = tmp_path / Path(host).name
    shutil.copytree(EXAMPLE, folder / EXAMPLE.name, ignore=shutil.ignore_patterns("__pycache__"))
    before = _snapshot(folder)
    yield folder
    after = _snapshot(folder)
    assert after == before, (f"Agnes wrote into the read-only connector mount: added {sorted(set(after) - set(before))}"
                             f", changed {sorted(k for k in before if k in after and after[k] != before[k])}")


async def test_mounted_example_is_configured_synced_and_queried(mounted: Path, make_settings, data_dir: Path,
                                                                 tmp_path: Path):
    db = shop_db(tmp_path)
    app = create_app(make_settings(AGNES_CUSTOM_CONNECTORS_DIR=str(mounted)))
    async with AsyncTestClient(app=app) as client:
        h = {"Authorization": f"Bearer {await bootstrap(client, data_dir)}"}
        configured = await client.post("/api/admin/configure", headers=h, json={
            "data_source": "custom", "name": "shop", "connector": "sqlite_file", "options": {"path": str(db)}})
        assert configured.status_code == 200, configured.text
        assert configured.json()["options"] == {"connector": "sqlite_file", "options": {"path": str(db)}}
        trigger = await client.post("/api/sync/trigger", headers=h, json={"source": "shop"})
        job = await wait_job(client, h, trigger.json()["job_id"])
        assert job["status"] == "succeeded", job
        assert {t["id"]: t["rows"] for t in job["tables"]} == {"shop.customers": 3, "shop.order_lines": 4}
        await wait_served(client, {"shop.customers", "shop.order_lines"})

        answer = await client.post("/api/query", headers=h, json={"sql": (
            "SELECT c.name, c.vip, c.joined_on, sum(o.quantity * o.unit_price) AS revenue, max(o.ordered_at) AS last "
            "FROM shop.order_lines o JOIN shop.customers c ON c.id = o.customer_id GROUP BY ALL ORDER BY c.name")})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [(c["name"], c["type"]) for c in body["columns"]] == [
            ("name", "VARCHAR"), ("vip", "BOOLEAN"), ("joined_on", "DATE"), ("revenue", "DOUBLE"),
            ("last", "TIMESTAMP")]
        assert [r[:4] for r in body["rows"]] == [["Ada", True, "2024-01-15", 39.0], ["Boris", False, "2024-02-01", 47.5],
                                                 ["Chen", False, None, None]]
        assert str(body["rows"][0][4]).startswith("2024-03-01")

        wrong = await client.post("/api/admin/configure", headers=h, json={
            "data_source": "custom", "name": "other", "connector": "sqlite_files"})
        err = wrong.json()["error"]
        assert err["code"] == "connector_not_found" and "sqlite_file" in err["message"]
        assert "AGNES_CUSTOM_CONNECTORS_DIR" in err["hint"]
