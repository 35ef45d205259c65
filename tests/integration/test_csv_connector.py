"""The built-in csv connector, run as Agnes runs it: a subprocess via run_connector."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pytest
from contract_tests.validator import validate_extract

from agnes.extract.runner import RunResult, find_connector, run_connector

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "connectors"
FIXTURES = BUILTIN / "csv" / "fixtures"


async def run_csv(files_dir: Path, out: Path, tables: list[str] | None = None) -> RunResult:
    info = find_connector("csv", builtin_dir=BUILTIN, custom_dir=None)
    return await run_connector(info, out, config={"files_dir": str(files_dir)}, secrets={}, timeout=120,
                               tables=tables)


def types_of(path: Path) -> dict[str, str]:
    return {r[0]: r[1] for r in duckdb.sql(f"DESCRIBE SELECT * FROM '{path}'").fetchall()}


async def test_fixtures_extract_validate_and_infer_types(tmp_path: Path) -> None:
    result = await run_csv(FIXTURES, tmp_path / "out")
    assert result.status == "succeeded", result.error
    assert result.tables_failed == {}
    assert {t: e["rows"] for t, e in result.tables_done.items()} == {"customers": 4, "orders_2024": 3}
    report = validate_extract(tmp_path / "out", source_name="csv")
    assert report.ok, report.violations
    assert types_of(tmp_path / "out/data/customers.parquet") == {
        "customer_id": "BIGINT", "name": "VARCHAR", "country": "VARCHAR", "signup_date": "DATE",
        "is_active": "BOOLEAN", "credit_limit": "DOUBLE",
    }
    orders = types_of(tmp_path / "out/data/orders_2024.parquet")  # semicolon-delimited, quoted ';' inside
    assert orders == {"order_id": "BIGINT", "customer_id": "BIGINT", "ordered_at": "TIMESTAMP",
                      "amount": "DOUBLE", "note": "VARCHAR"}
    notes = duckdb.sql(f"SELECT note FROM '{tmp_path}/out/data/orders_2024.parquet' ORDER BY order_id").fetchall()
    assert notes == [("first order",), (None,), ("gift; wrapped",)]
    con = duckdb.connect(str(tmp_path / "out/extract.duckdb"), read_only=True)
    meta = dict(con.execute("SELECT table_name, description FROM _meta").fetchall())
    con.close()
    assert meta == {"customers": "CSV file customers.csv", "orders_2024": "CSV file Orders 2024.csv"}


def _write(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)


BAD_FILES: list[tuple[str, bytes, list[str]]] = [
    ("latin1.csv", b"name,city\nJos\xe9,Z\xfcrich\n", ["latin1.csv", "line 2", "not valid UTF-8", "Windows-1252",
                                                      "re-save it as UTF-8"]),
    ("utf16.csv", "a,b\n1,2\n".encode("utf-16"), ["utf16.csv", "UTF-16", "re-save it as UTF-8"]),
    ("more.csv", b"a,b,c\n1,2,3\n4,5,6,7\n", ["more.csv", "line 3", "4 fields but the header has 3"]),
    ("fewer.csv", b"a,b,c\n1,2,3\n4,5,6\n7,8\n", ["fewer.csv", "line 4", "2 fields but the header has 3"]),
    ("empty.csv", b"", ["empty.csv", "empty (0 bytes)"]),
    ("blank.csv", b"  \n\n", ["blank.csv", "empty (only whitespace)"]),
    ("binary.csv", b"a,b\n1,2\n\x00\x01\x02\xff" * 10, ["binary.csv", "line 3", "NUL byte", "binary file"]),
    ("sheet.csv", b"PK\x03\x04\x14\x00\x06\x00rest-of-zip", ["sheet.csv", "binary file", "Excel .xlsx", "as CSV"]),
    ("dups.csv", b"id,Name,name\n1,a,b\n", ["dups.csv", "line 1", "duplicate column name 'name'", "columns 2 and 3"]),
    ("unclosed.csv", b'a,b\n1,"open\n2,3\n', ["unclosed.csv", "line 2", "never closed"]),
    ("unnamed.csv", b"a,,b\n1,2,3\n", ["unnamed.csv", "line 1", "column 2 of 3 has an empty name",
                                        "give every column a name"]),
    ("trailing.csv", b"a,b,\n1,2,3\n", ["trailing.csv", "line 1", "column 3 of 3", "trailing delimiter"]),
]


@pytest.mark.parametrize(("name", "data", "fragments"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
async def test_each_bad_file_fails_its_table_with_a_clear_message(
    tmp_path: Path, name: str, data: bytes, fragments: list[str]
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    _write(files, name, data)
    _write(files, "good.csv", b"id,flag\n1,true\n2,false\n")
    result = await run_csv(files, tmp_path / "out")
    table = name.removesuffix(".csv")
    assert result.status == "succeeded", result.error  # one good table -> exit 0, the job decides "partial"
    assert set(result.tables_done) == {"good"}
    failed = result.tables_failed[table]
    assert failed["file"] == name
    for fragment in fragments:
        assert fragment in failed["error"], failed["error"]
    assert not (tmp_path / "out/data" / f"{table}.parquet").exists()
    report = validate_extract(tmp_path / "out")
    assert report.ok, report.violations


async def test_problems_far_into_a_big_file_name_the_right_line(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    body = "".join(f"{i},{i * 2},x{i}\n" for i in range(40_000))
    _write(files, "late_ragged.csv", ("a,b,c\n" + body + "1,2\n").encode())
    _write(files, "late_latin.csv", ("a,b,c\n" + body).encode() + b"1,2,Z\xfcrich\n")
    _write(files, "late_type.csv", ("a,b,c\n" + body + "n/a,3,x\n").encode())  # a type guess that breaks late
    result = await run_csv(files, tmp_path / "out")
    assert "line 40002: 2 fields" in result.tables_failed["late_ragged"]["error"]
    assert "line 40002: not valid UTF-8" in result.tables_failed["late_latin"]["error"]
    assert result.tables_done["late_type"]["rows"] == 40_001
    assert types_of(tmp_path / "out/data/late_type.parquet")["a"] == "VARCHAR"


async def test_all_tables_failed_exits_non_zero(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    _write(files, "a.csv", b"")
    _write(files, "b.csv", b"x,x\n1,2\n")
    result = await run_csv(files, tmp_path / "out")
    assert result.status == "failed" and result.returncode == 1
    assert set(result.tables_failed) == {"a", "b"} and result.tables_done == {}


async def test_missing_folder_and_no_files(tmp_path: Path) -> None:
    missing = await run_csv(tmp_path / "nope", tmp_path / "o1")
    assert missing.status == "failed" and missing.returncode == 2 and "files_dir" in missing.error
    (tmp_path / "empty").mkdir()
    none = await run_csv(tmp_path / "empty", tmp_path / "o2")
    assert none.returncode == 2 and "no *.csv files" in none.error


async def test_names_are_normalised_and_collisions_reported(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    _write(files, "Sales 2024.csv", b"id\n1\n")
    _write(files, "sales-2024.csv", b"id\n2\n")
    _write(files, "2023.CSV", b"id,amount\n1,2.5\n")
    _write(files, "???.csv", b"id\n1\n")
    _write(files, ".~lock.x.csv", b"junk")
    _write(files, "notes.txt", b"not a csv")
    result = await run_csv(files, tmp_path / "out")
    assert set(result.tables_done) == {"t_2023"}
    assert "rename all but one" in result.tables_failed["sales_2024"]["error"]
    assert "cannot derive a table name" in result.tables_failed["???"]["error"]


async def test_agnes_tables_selects_files(tmp_path: Path) -> None:
    result = await run_csv(FIXTURES, tmp_path / "out", tables=["orders_2024", "missing_one"])
    assert set(result.tables_done) == {"orders_2024"}
    assert "no CSV file" in result.tables_failed["missing_one"]["error"]
    assert sorted(p.name for p in (tmp_path / "out/data").iterdir()) == ["orders_2024.parquet"]


async def test_no_row_is_silently_dropped(tmp_path: Path) -> None:
    """DuckDB's sniffer, left alone, skips leading rows of some files and drops '#' lines."""
    files = tmp_path / "files"
    files.mkdir()
    _write(files, "hashes.csv", b"code,qty\n#1,2\n#2,3\nA3,4\n")
    _write(files, "blank_lines.csv", b"a,b\n1,2\n\n3,4\n")
    result = await run_csv(files, tmp_path / "out")
    assert result.tables_done["hashes"]["rows"] == 3 and result.tables_done["blank_lines"]["rows"] == 2
    codes = duckdb.sql(f"SELECT code FROM '{tmp_path}/out/data/hashes.parquet' ORDER BY qty").fetchall()
    assert codes == [("#1",), ("#2",), ("A3",)]


async def test_the_connector_reads_a_snapshot_an_upload_cannot_change(tmp_path: Path) -> None:
    """A sync reads hard links taken before the run: a file replaced meanwhile (as an upload does) is not mixed in."""
    from agnes.services.source_files import connector_inputs
    from agnes.services.sources import RunSpec

    uploads = tmp_path / "uploads" / "csv"
    uploads.mkdir(parents=True)
    _write(uploads, "orders.csv", b"id,total\n1,10\n2,20\n")
    (uploads / ".orders.name").write_text("Orders.csv\n")
    info = find_connector("csv", builtin_dir=BUILTIN, custom_dir=None)
    spec = RunSpec(source="csv", type="csv", connector=info, config={"files_dir": str(uploads)}, secrets_env={},
                   tables=None, extracts_all=True, state_dir=tmp_path / "state")
    async with connector_inputs(spec) as inputs:
        snapshot = Path(inputs.config["files_dir"])
        assert snapshot.parent == uploads and snapshot.name.startswith(".run-")
        replacement = uploads / ".upload-new.csv"  # what an upload does: a new file renamed over the old name
        replacement.write_bytes(b"id,total,extra\n9,90,x\n")
        replacement.replace(uploads / "orders.csv")
        (uploads / "late.csv").write_bytes(b"a\n1\n")  # and a new file arriving mid-run
        result = await run_connector(info, tmp_path / "out", config=inputs.config, secrets={}, timeout=120)
    assert result.status == "succeeded", result.error
    assert set(result.tables_done) == {"orders"}
    rows = duckdb.sql(f"SELECT * FROM '{tmp_path}/out/data/orders.parquet' ORDER BY id").fetchall()
    assert rows == [(1, 10), (2, 20)]
    con = duckdb.connect(str(tmp_path / "out/extract.duckdb"), read_only=True)
    assert con.execute("SELECT description FROM _meta").fetchall() == [("CSV file Orders.csv",)]
    con.close()
    assert not await asyncio.to_thread(snapshot.exists)  # removed after the run; the upload folder has the new file
    assert (uploads / "orders.csv").read_bytes().startswith(b"id,total,extra")
