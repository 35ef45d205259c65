"""Getting data into a test instance the way an admin would: configure, sync, wait until served.

`load_sources` configures the built-in `sample` source and (optionally) a csv
source with uploaded files, runs one sync job through the API, waits for it,
then forces the serving catalog to attach what was published.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

SECRET = "TOPSECRET"
# A csv source `hr` whose values must never reach a user without access.
HR_FILES = {
    "salaries.csv": f"id,name,salary\n1,Ann,{SECRET}-100\n2,Bob,{SECRET}-200\n".encode(),
    "vault.csv": f"id,code\n7,{SECRET}-vault\n".encode(),
}


async def wait_job(client: AsyncTestClient[Any], headers: dict[str, str], job_id: int) -> dict[str, Any]:
    for _ in range(600):
        job = (await client.get(f"/api/sync/jobs/{job_id}", headers=headers)).json()
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {job}")


async def on_app(client: AsyncTestClient[Any], fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Await `fn(*args, **kwargs)` on the app's own event loop (the test client's portal thread): jobs it
    starts and locks it takes then belong to the app, as in a real server, not to the test's loop."""
    return await asyncio.to_thread(client.blocking_portal.call, functools.partial(fn, *args, **kwargs))


async def wait_served(client: AsyncTestClient[Any], table_ids: set[str], seconds: float = 30) -> None:
    serving = client.app.state.instance.serving
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        # The app (and its serving loop) runs on the test client's portal thread: refresh there.
        await asyncio.to_thread(client.blocking_portal.call, functools.partial(serving.refresh, force=True))
        served = {t.id for t in serving.catalog.tables()}
        if table_ids <= served:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not served after {seconds}s: {sorted(table_ids - served)}; errors "
                                 f"{serving.catalog.errors}")
        await asyncio.sleep(0.05)


async def load_sources(client: AsyncTestClient[Any], admin_token: str, *, sample: bool = True,
                       csv: dict[str, dict[str, bytes]] | None = None) -> set[str]:
    """Configure `sample` and csv sources ({name: {file: bytes}}), sync them, wait until served."""
    h = {"Authorization": f"Bearer {admin_token}"}
    expected: set[str] = set()
    if sample:
        resp = await client.post("/api/admin/configure", json={"data_source": "sample"}, headers=h)
        assert resp.status_code == 200, resp.text
        expected |= {"sample.customers", "sample.orders", "sample.products"}
    for name, files in (csv or {}).items():
        resp = await client.post("/api/admin/configure", json={"data_source": "csv", "name": name}, headers=h)
        assert resp.status_code == 200, resp.text
        for filename, content in files.items():
            up = await client.post(f"/api/admin/uploads?source={name}", headers=h, files={"file": (filename, content)})
            assert up.status_code == 201, up.text
            expected.add(f"{name}.{up.json()['table']}")
    trigger = await client.post("/api/sync/trigger", json={}, headers=h)
    assert trigger.status_code == 200, trigger.text
    job = await wait_job(client, h, trigger.json()["job_id"])
    assert job["status"] == "succeeded", job
    await wait_served(client, expected)
    return expected


def threaded_client(client: AsyncTestClient[Any]) -> httpx.Client:
    """A blocking client on the same app, for real concurrency: AsyncTestClient runs one request at a
    time (its transport blocks), but its transport is thread-safe, so calls from threads overlap."""
    return httpx.Client(transport=client._transport, base_url=str(client.base_url))  # type: ignore[arg-type]


async def publish_remote_source(client: AsyncTestClient[Any], source: str, tmp: Path) -> str:
    """A Tier-B-like source with one remote (pass-through) table over a sqlite file; returns its id."""
    from agnes.control import publications
    from tests.unit.test_engine_remote import publish_remote, sqlite_file

    instance = client.app.state.instance
    db = sqlite_file(tmp / f"{source}.sqlite", [1, 2, 3])
    run = publish_remote(instance.settings.extracts_dir, source, instance.settings.analytics_dir / "extensions",
                         ("lite", "sqlite", str(db), None), {"items": "SELECT v FROM lite.items"})

    async def record() -> None:
        async with instance.control.transaction() as conn:
            await conn.execute("INSERT INTO sources (name, type, visible_to_all, created_at, updated_at) "
                               "VALUES (?, 'external', 1, '', '')", (source,))
            await publications.record(conn, source=source, run_id=run.name, previous_run_id=None, extracted_at=None)

    await asyncio.to_thread(client.blocking_portal.call, record)
    await wait_served(client, {f"{source}.items"})
    return f"{source}.items"
