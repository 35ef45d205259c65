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
