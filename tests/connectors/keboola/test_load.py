"""Typing Keboola's text values: a value the declared type would change is reported, never changed.

TRY_CAST alone rounds `1.5` into BIGINT 2, `12.555` into 12.56, drops a
TIMESTAMP's offset and a DATE's time; each such value keeps its column VARCHAR
and is reported per column.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agnes.extract.keboola.api import KeboolaError
from agnes.extract.keboola.load import load

ROOT = Path(__file__).resolve().parents[3]


def run_load(tmp_path: Path, declared: str, values: list[str]) -> tuple[list, str, list]:
    """One table (id BIGINT, v <declared>) from a CSV with a header; returns (problems, parquet type of v, values)."""
    src = tmp_path / "export.csv"
    src.write_text("\"id\",\"v\"\n" + "".join(f'"{i}","{v}"\n' for i, v in enumerate(values, 1)), encoding="utf-8")
    work = tmp_path / "work"
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    loaded = load("in.c-x.t", [src], header=True, types=[("id", "BIGINT"), ("v", declared)], work=work,
                  out=tmp_path / "out.parquet", cursor="2024-05-01T00:00:00+00:00",
                  full_loaded_at="2024-05-01T00:00:00+00:00", primary_key=["id"])
    kept = dict(loaded.types)["v"]
    column = pq.read_table(loaded.path).sort_by("id").column("v").to_pylist()
    return loaded.problems, kept, column


CHANGED = [  # (declared, values that parse exactly, the value a plain TRY_CAST would silently change)
    pytest.param("BIGINT", ["5", " -7 ", "+3"], "1.5", id="integer-fraction"),
    pytest.param("BIGINT", ["5"], "1e3", id="integer-exponent"),
    pytest.param("BIGINT", ["5"], "1_000", id="integer-underscore"),
    pytest.param("DECIMAL(12,2)", ["12.50", "7", "-0.10", "3.1200"], "12.555", id="decimal-scale"),
    pytest.param("DECIMAL(12,2)", ["1.5"], "1.2345e1", id="decimal-exponent-scale"),
    pytest.param("TIMESTAMP", ["2024-05-01 10:00:00", "2024-05-01T10:00:00Z", "2024-05-01"],
                 "2024-05-01T10:00:00+0200", id="timestamp-offset"),
    pytest.param("TIMESTAMP", ["2024-05-01 10:00:00.123456"], "2024-05-01 10:00:00.1234567", id="timestamp-nanos"),
    pytest.param("DATE", ["2024-01-02", "2024-01-03 00:00:00"], "2024-01-02 10:00:00", id="date-time-part"),
    pytest.param("DATE", ["2024-01-02"], "2024-01-02T00:00:00+02:00", id="date-offset"),
]


@pytest.mark.parametrize(("declared", "good", "bad"), CHANGED)
def test_a_value_the_cast_would_change_is_reported_and_kept(tmp_path: Path, declared: str, good: list[str],
                                                            bad: str) -> None:
    problems, kept, column = run_load(tmp_path, declared, [*good, bad])
    assert [(p.column, p.declared, p.bad_values, p.example) for p in problems] == [("v", declared, 1, bad)]
    assert kept == "VARCHAR" and column[-1] == bad  # nothing lost, nothing rounded

    problems, kept, _ = run_load(tmp_path, declared, good)
    assert problems == [] and kept == declared  # the exact values alone stay typed


def test_exact_values_stay_typed(tmp_path: Path) -> None:
    from decimal import Decimal

    problems, kept, column = run_load(tmp_path, "DECIMAL(12,2)", ["12.50", "", "1.5e1"])
    assert problems == [] and kept == "DECIMAL(12,2)" and column == [Decimal("12.50"), None, Decimal("15.00")]
    problems, kept, column = run_load(tmp_path, "TIMESTAMP", ["2024-05-01T10:00:00Z", "2024-05-01 10:00:00+00:00"])
    assert problems == [] and column == [datetime(2024, 5, 1, 10), datetime(2024, 5, 1, 10)]


def test_timestamp_with_time_zone_without_an_offset_is_utc_whatever_the_host_zone(tmp_path: Path) -> None:
    src = tmp_path / "export.csv"
    src.write_text('"id","at"\n"1","2024-05-01 10:00:00"\n"2","2024-05-01T10:00:00+02:00"\n', encoding="utf-8")
    (tmp_path / "work" / "tmp").mkdir(parents=True)
    script = ("import sys; from pathlib import Path; from agnes.extract.keboola.load import load; "
              "r = load('in.c-x.t', [Path(sys.argv[1])], header=True, "
              "types=[('id', 'BIGINT'), ('at', 'TIMESTAMP WITH TIME ZONE')], work=Path(sys.argv[2]), "
              "out=Path(sys.argv[3]), cursor='c', full_loaded_at='f'); print(len(r.problems))")
    # DuckDB takes its session zone from the process's TZ at start: a host far from UTC, in its own process
    done = subprocess.run([sys.executable, "-c", script, str(src), str(tmp_path / "work"), str(tmp_path / "o.parquet")],
                          env={**os.environ, "TZ": "America/New_York"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr
    raw = pq.read_table(tmp_path / "o.parquet").sort_by("id").column("at").cast("int64").to_pylist()  # µs, UTC
    expected = [datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 1, 8, tzinfo=UTC)]
    assert raw == [int(e.timestamp() * 1_000_000) for e in expected]


def test_each_load_stays_within_its_memory_share(tmp_path: Path) -> None:
    """Several tables load at once, each in its own DuckDB: `memory_limit` is really applied (a share
    far too small for a 60 MB export fails that table cleanly; a sane share loads it)."""
    src = tmp_path / "export.csv"
    with src.open("w", encoding="utf-8") as f:
        f.write('"id","v"\n')
        f.writelines(f'"{i}","{"x" * 200}{i}"\n' for i in range(300_000))

    def run(limit: str) -> object:
        work = tmp_path / f"work-{limit}"
        (work / "tmp").mkdir(parents=True)
        return load("in.c-x.t", [src], header=True, types=[("id", "BIGINT"), ("v", "VARCHAR")], work=work,
                    out=tmp_path / f"{limit}.parquet", cursor="2024-05-01T00:00:00+00:00",
                    full_loaded_at="2024-05-01T00:00:00+00:00", primary_key=["id"], memory_limit=limit)

    with pytest.raises(KeboolaError, match="Out of Memory"):
        run("8MB")
    assert pq.read_metadata(run("512MB").path).num_rows == 300_000


def test_the_memory_share_splits_half_the_memory_between_parallel_loads() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("keboola_extractor", ROOT / "connectors" / "keboola" / "extractor.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    one, four = (int(module.load_memory_share(n).removesuffix("MB")) for n in (1, 4))
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    assert 256 <= four <= one <= total_mb // 2 and abs(one - 4 * four) <= 4
