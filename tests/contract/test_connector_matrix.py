"""The connector matrix: EVERY connector in connectors/ runs on its own fixture
as a real subprocess, and its output must pass the frozen contract.

A connector declares how to run it in `connectors/<name>/matrix.json`:
`{"config": {...}, "secrets": {...}, "expect_tables": [...]}`; `${FIXTURES}`
stands for its `fixtures/` folder. A connector without one fails this test.
`"server": "keboola"` starts the local Keboola Storage API server (demo project)
for the run; `${KEBOOLA_URL}` / `${KEBOOLA_TOKEN}` stand for its URL and token.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from contract_tests import validate_extract

from agnes.extract.runner import find_connector, list_connectors, run_connector

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "connectors"
CONNECTORS = sorted(c.name for c in list_connectors(BUILTIN, None))


def test_every_builtin_connector_is_in_the_matrix():
    folders = sorted(p.name for p in BUILTIN.iterdir() if (p / "extractor.py").is_file())
    assert folders and folders == CONNECTORS


@contextmanager
def _server(kind: str | None, tmp: Path) -> Iterator[dict[str, str]]:
    """Substitutions for a matrix entry that needs a stand-in server (started here, stopped here)."""
    if kind is None:
        yield {}
        return
    assert kind == "keboola", f"unknown matrix server {kind!r}"
    from agnes.devtools.keboola_server import KeboolaServer, demo_data

    token = secrets.token_urlsafe(16)
    server = KeboolaServer(demo_data(tmp / "kbc").root, tokens=[token], slice_rows=2).start()
    try:
        yield {"${KEBOOLA_URL}": server.url, "${KEBOOLA_TOKEN}": token}
    finally:
        server.stop()


@pytest.mark.parametrize("name", CONNECTORS)
async def test_connector_output_meets_the_contract(name: str, tmp_path: Path):
    info = find_connector(name, builtin_dir=BUILTIN, custom_dir=None)
    spec_file = info.path / "matrix.json"
    assert spec_file.is_file(), f"connectors/{name}/matrix.json is missing: declare how the matrix runs it"
    raw = spec_file.read_text().replace("${FIXTURES}", str(info.path / "fixtures"))
    out = tmp_path / "out"
    with _server(json.loads(raw).get("server"), tmp_path) as values:
        for key, value in values.items():
            raw = raw.replace(key, value)
        spec = json.loads(raw)
        result = await run_connector(info, out, config=spec.get("config", {}), secrets=spec.get("secrets", {}),
                                     timeout=300, source_name=name)
    assert result.status == "succeeded", f"{name}: {result.error}\n{result.log_tail}"
    report = validate_extract(out, source_name=name)
    assert report.ok, report.to_text()
    assert sorted(t.name for t in report.tables) == sorted(spec["expect_tables"])
