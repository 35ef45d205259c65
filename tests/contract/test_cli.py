"""`python -m contract_tests` as a connector author runs it: real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from contract_tests import main

from .helpers import run_sql

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "contract_tests", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_valid_extract_exits_0(extract: Path, tmp_path: Path) -> None:
    proc = run_cli(str(extract), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK" in proc.stdout
    assert "orders" in proc.stdout and "parquet_dir" in proc.stdout


def test_violations_exit_1_and_list_each_fix(extract: Path, tmp_path: Path) -> None:
    run_sql(
        extract,
        "ALTER TABLE _meta ALTER rows TYPE VARCHAR",
        "UPDATE _meta SET extracted_at = NULL WHERE table_name = 'orders'",
    )
    proc = run_cli(str(extract), "--source", "Bad Name", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    for code in ("meta_column_type", "extracted_at_missing", "source_name_invalid"):
        assert f"[{code}]" in out
    assert out.count("fix: ") == 3
    assert "ALTER TABLE _meta ALTER rows TYPE BIGINT" in out


def test_json_output(extract: Path, tmp_path: Path) -> None:
    (extract / "data" / "orders.parquet").write_bytes(b"garbage")
    proc = run_cli(str(extract), "--json", cwd=tmp_path)
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert [v["code"] for v in doc["violations"]] == ["parquet_unreadable"]
    assert set(doc["violations"][0]) == {"code", "table", "message", "fix"}
    assert {t["name"] for t in doc["tables"]} == {"orders", "events", "customers"}
    assert doc["duckdb_version"] == "1.5.5"


def test_json_output_when_ok(extract: Path, tmp_path: Path) -> None:
    proc = run_cli("--json", str(extract / "extract.duckdb"), cwd=tmp_path)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["ok"] is True


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli(str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


def test_folder_without_extract_duckdb_is_a_violation(tmp_path: Path) -> None:
    proc = run_cli(str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "[extract_missing]" in proc.stdout


def test_no_arguments_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli(cwd=tmp_path)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_runs_without_agnes_installed(extract: Path, tmp_path: Path) -> None:
    # Make `import agnes` fail, as on a connector author's machine.
    code = (
        "import runpy, sys; sys.modules['agnes'] = None; sys.argv = ['contract_tests', sys.argv[1]]; "
        "runpy.run_module('contract_tests', run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(extract)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_main_returns_exit_codes(extract: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(extract)]) == 0
    assert main([str(extract), "--source", "select"]) == 1
    assert "[source_name_reserved]" in capsys.readouterr().out
    assert main([str(tmp_path / "missing")]) == 2
    assert main(["--bogus"]) == 2
    assert main(["--help"]) == 0


def test_quick_skips_the_full_data_read(extract: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = extract / "data" / "big.parquet"
    pq.write_table(pa.table({"s": [f"v{i}" for i in range(50_000)]}), f, compression="zstd")
    run_sql(extract, "INSERT INTO _meta VALUES ('big', NULL, 50000, NULL, TIMESTAMP '2026-01-01', 'local')")
    page = pq.read_metadata(f).row_group(0).column(0)
    raw = bytearray(f.read_bytes())
    for i in range(page.data_page_offset + 100, page.data_page_offset + 400):
        raw[i] ^= 0xFF
    f.write_bytes(bytes(raw))
    assert main([str(extract), "--quick"]) == 0
    assert main([str(extract)]) == 1
    assert "[parquet_unreadable] big:" in capsys.readouterr().out
