"""The connector matrix: EVERY connector in connectors/ runs on its own fixture
as a real subprocess, and its output must pass the frozen contract.

A connector declares how to run it in `connectors/<name>/matrix.json`:
`{"config": {...}, "secrets": {...}, "expect_tables": [...]}`; `${FIXTURES}`
stands for its `fixtures/` folder. A connector without one fails this test.
"""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("name", CONNECTORS)
async def test_connector_output_meets_the_contract(name: str, tmp_path: Path):
    info = find_connector(name, builtin_dir=BUILTIN, custom_dir=None)
    spec_file = info.path / "matrix.json"
    assert spec_file.is_file(), f"connectors/{name}/matrix.json is missing: declare how the matrix runs it"
    raw = spec_file.read_text().replace("${FIXTURES}", str(info.path / "fixtures"))
    spec = json.loads(raw)
    out = tmp_path / "out"
    result = await run_connector(info, out, config=spec.get("config", {}), secrets=spec.get("secrets", {}),
                                 timeout=300, source_name=name)
    assert result.status == "succeeded", f"{name}: {result.error}\n{result.log_tail}"
    report = validate_extract(out, source_name=name)
    assert report.ok, report.to_text()
    assert sorted(t.name for t in report.tables) == sorted(spec["expect_tables"])
