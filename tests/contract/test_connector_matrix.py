"""The connector matrix: EVERY connector in connectors/ (and any in the default
custom folder connectors/custom/) runs on its own fixture as a real
subprocess, and its output must pass the frozen contract. A folder there
without extractor.py (a misspelling) fails instead of being skipped silently.

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
#: The default custom-connector folder (settings: connectors.custom_dir is None); the image mounts
#: Tier A connectors there. Whatever sits in it in this checkout runs in the matrix too.
CUSTOM = BUILTIN / "custom"
#: Folders under connectors/ (and connectors/custom/) that are not connectors.
NOT_CONNECTORS = frozenset({"__pycache__", "custom"})
INFOS = list_connectors(BUILTIN, CUSTOM)
CONNECTORS = sorted(f"{c.origin}:{c.name}" for c in INFOS)


def connector_folders(base: Path) -> list[Path]:
    """Every folder that should be a connector: all but caches, dot-folders and connectors/custom."""
    if not base.is_dir():
        return []
    return sorted(
        p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in NOT_CONNECTORS
    )


def folder_problems(base: Path, origin: str, found: list) -> list[str]:
    """Why a folder under `base` would silently not run in the matrix (empty when all is well)."""
    listed = {c.name: c for c in found}
    problems = []
    for folder in connector_folders(base):
        if not (folder / "extractor.py").is_file():
            problems.append(f"{folder} has no extractor.py (misspelled? a connector folder needs extractor.py; "
                            "remove the folder if it is not a connector)")
        elif folder.name not in listed or listed[folder.name].origin != origin:
            problems.append(f"{folder} is not discovered as a {origin} connector (its name must match "
                            "^[a-z][a-z0-9_]{0,62}$ and a custom connector may not reuse a built-in name)")
    return problems


def test_every_connector_folder_is_in_the_matrix():
    assert folder_problems(BUILTIN, "builtin", INFOS) == []
    assert folder_problems(CUSTOM, "custom", INFOS) == []
    assert [c for c in CONNECTORS if c.startswith("builtin:")], "no built-in connector found"


def test_a_misspelled_or_empty_connector_folder_fails_the_matrix(tmp_path: Path):
    base = tmp_path / "connectors"
    (base / "good").mkdir(parents=True)
    (base / "good" / "extractor.py").write_text("")
    (base / "csv_typo").mkdir()
    (base / "csv_typo" / "extractr.py").write_text("")
    (base / "Bad-Name").mkdir()
    (base / "Bad-Name" / "extractor.py").write_text("")
    for ignored in ("__pycache__", ".git", "custom"):
        (base / ignored).mkdir()
    problems = folder_problems(base, "builtin", list_connectors(base, None))
    assert len(problems) == 2, problems
    assert "csv_typo has no extractor.py" in problems[1] and "Bad-Name is not discovered" in problems[0]
    # connectors/custom/ is scanned the same way, and may not exist at all.
    assert folder_problems(tmp_path / "missing", "custom", []) == []
    (base / "custom" / "mine").mkdir()
    assert "mine has no extractor.py" in folder_problems(base / "custom", "custom", [])[0]


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


@pytest.mark.parametrize("key", CONNECTORS)
async def test_connector_output_meets_the_contract(key: str, tmp_path: Path):
    origin, name = key.split(":", 1)
    info = find_connector(name, builtin_dir=BUILTIN, custom_dir=CUSTOM)
    assert info.origin == origin
    spec_file = info.path / "matrix.json"
    assert spec_file.is_file(), f"{info.path}/matrix.json is missing: declare how the matrix runs it"
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
