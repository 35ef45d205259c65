"""`agnes contract check` is the same validator as `python -m contract_tests`."""

import json

import duckdb
from contract_tests.fixtures import build_valid_extract

from tests.helpers import run_agnes


def test_contract_check_ok_and_violations(tmp_path):
    good = build_valid_extract(tmp_path / "good")
    ok = run_agnes(["contract", "check", str(good)], tmp_path / "data")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with duckdb.connect(str(good / "extract.duckdb")) as con:
        con.execute("UPDATE _meta SET rows = rows + 1")
    bad = run_agnes(["contract", "check", str(good), "--json"], tmp_path / "data")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert not report["ok"] and any(v["code"] == "rows_mismatch" for v in report["violations"])
    assert all(v["fix"] for v in report["violations"])
    missing = run_agnes(["contract", "check", str(tmp_path / "nope")], tmp_path / "data")
    assert missing.returncode == 2


def test_contract_check_human_output_and_source_option(tmp_path):
    good = build_valid_extract(tmp_path / "good")
    ok = run_agnes(["contract", "check", str(good), "--source", "sales_csv"], tmp_path / "data")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0] == f"contract check: {good} (source sales_csv)"
    assert lines[1] == "OK: the extract meets the contract (3 table(s))."
    assert any(line.split()[:3] == ["events", "local", "parquet_dir"] and line.endswith("rows=5") for line in lines)
    assert not ok.stdout.lstrip().startswith("{")  # human text, not JSON

    # --source is checked too: a DuckDB keyword is refused, in text with its fix.
    bad = run_agnes(["contract", "check", str(good), "--source", "values"], tmp_path / "data")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "(source values)" in bad.stdout and "FAILED: 1 violation(s)." in bad.stdout
    assert "[source_name_reserved] source name 'values' is reserved" in bad.stdout
    assert "fix: pick another name, e.g. 'values_src'" in bad.stdout

    # Without --source no source name is checked at all.
    plain = run_agnes(["contract", "check", str(good)], tmp_path / "data")
    assert plain.returncode == 0 and "(source" not in plain.stdout


def test_contract_check_reads_every_page_unless_quick(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = build_valid_extract(tmp_path / "good")
    f = good / "data" / "big.parquet"
    pq.write_table(pa.table({"s": [f"v{i}" for i in range(50_000)]}), f, compression="zstd")
    with duckdb.connect(str(good / "extract.duckdb")) as con:
        con.execute("INSERT INTO _meta VALUES ('big', NULL, 50000, NULL, TIMESTAMP '2026-01-01', 'local')")
    page = pq.read_metadata(f).row_group(0).column(0)
    raw = bytearray(f.read_bytes())
    for i in range(page.data_page_offset + 100, page.data_page_offset + 400):
        raw[i] ^= 0xFF
    f.write_bytes(bytes(raw))
    deep = run_agnes(["contract", "check", str(good)], tmp_path / "data")
    assert deep.returncode == 1 and "[parquet_unreadable] big:" in deep.stdout, deep.stdout + deep.stderr
    quick = run_agnes(["contract", "check", str(good), "--quick"], tmp_path / "data")
    assert quick.returncode == 0, quick.stdout + quick.stderr
