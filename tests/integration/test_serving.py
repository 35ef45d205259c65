"""The serving loop: counter moves -> only changed sources re-attach; broken runs reach health once."""

from __future__ import annotations

from pathlib import Path

from contract_tests.fixtures import build_valid_extract

from agnes.control import health_errors, publications
from agnes.engine.publish import new_staging_dir, publish
from agnes.services.instance import start_instance
from agnes.services.serving import ATTACH_FAILED, CatalogService


async def _publish(instance, source: str, *, broken: bool = False) -> None:
    staging = new_staging_dir(instance.settings.extracts_dir, source)
    build_valid_extract(staging)
    if broken:
        (staging / "data" / "orders.parquet").write_bytes(b"not parquet")
    run = publish(instance.settings.extracts_dir, source, staging)
    async with instance.control.transaction() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO sources (name, type, created_at, updated_at) VALUES (?, 'external', '', '')",
            (source,))
        await publications.record(conn, source=source, run_id=run.run_id, previous_run_id=run.previous_run_id,
                                  extracted_at=None)


async def test_counter_driven_refresh(make_settings, data_dir: Path):
    instance = await start_instance(make_settings(), serve=False)
    service = CatalogService(instance)
    try:
        first = await service.refresh()
        assert first is not None and service.state.loaded and first.attached == []
        assert await service.refresh() is None  # counter unchanged: nothing to do
        await _publish(instance, "alpha")
        await _publish(instance, "beta")
        report = await service.refresh()
        assert sorted(report.attached) == ["alpha", "beta"]
        ids = {t.id for t in service.catalog.tables()}
        assert {"alpha.orders", "beta.orders", "alpha.customers"} <= ids
        # Same table names in two sources: bare names are withheld and reported.
        assert any("orders" in w and "alpha.orders" in w for w in service.warnings())
        await _publish(instance, "alpha")
        again = await service.refresh()
        assert again.attached == ["alpha"] and "beta" in again.unchanged
        assert service.health()[0] == "ok"
    finally:
        await service.stop()
        await instance.close()


async def test_broken_run_is_reported_once_and_old_run_keeps_serving(make_settings):
    instance = await start_instance(make_settings(), serve=False)
    service = CatalogService(instance)
    try:
        await _publish(instance, "alpha")
        await service.refresh()
        before = service.catalog.execute_readonly('SELECT count(*) FROM "alpha"."orders"').to_pylist()
        await _publish(instance, "alpha", broken=True)
        report = await service.refresh()
        assert "alpha" in report.errors
        await service.refresh(force=True)
        async with instance.control.read() as conn:
            errors = [e for e in await health_errors.open_errors(conn) if e.code == ATTACH_FAILED]
        assert len(errors) == 1 and errors[0].source == "alpha"
        assert service.catalog.execute_readonly('SELECT count(*) FROM "alpha"."orders"').to_pylist() == before
        assert service.health()[0] == "warn"
        await _publish(instance, "alpha")  # fixed
        await service.refresh()
        async with instance.control.read() as conn:
            assert [e for e in await health_errors.open_errors(conn) if e.code == ATTACH_FAILED] == []
    finally:
        await service.stop()
        await instance.close()
