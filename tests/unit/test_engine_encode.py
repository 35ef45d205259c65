"""Result encodings: JSON value types, CSV limits, Arrow IPC streams (with and without dictionaries)."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from agnes.engine.encode import ArrowIpcEncoder, csv_problem, encode_json, rows_of


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    yield c
    c.close()


def test_json_values_keep_their_types(con):
    table = con.sql(
        "SELECT 1::HUGEINT h, sum(2::BIGINT) s, 1.50::DECIMAL(10,2) d, NULL::DECIMAL(4,2) dn, DATE '2024-02-29' dd, "
        "TIMESTAMP '2024-01-01 12:00:00' t0, TIMESTAMP '2024-01-01 12:00:00.5' t5, "
        "TIMESTAMPTZ '2024-01-01 12:00:00+00' tz, TIME '12:30:01' tm, TIMESTAMP_NS '2024-01-01 00:00:00.000000001' ns,"
        " 'infinity'::DATE inf, '-infinity'::TIMESTAMP ninf, 'nan'::DOUBLE nan, 2.5::DOUBLE f, true b, 'x'::BLOB bl, "
        "[1, 2] l, {'a': 1} st, INTERVAL 3 DAY + INTERVAL 90 MINUTE iv").to_arrow_table()
    types = [str(t) for t in con.sql(
        "SELECT 1::HUGEINT h, sum(2::BIGINT) s").types] + [None] * (table.num_columns - 2)
    assert encode_json(rows_of(table, types)) == (
        b'[[1,2,"1.50",null,"2024-02-29","2024-01-01T12:00:00","2024-01-01T12:00:00.500000","2024-01-01T12:00:00Z",'
        b'"12:30:01","2024-01-01T00:00:00.000000001","infinity","-infinity",null,2.5,true,"eA==",[1,2],{"a":1},'
        b'"P0M3DT5400S"]]')


def test_csv_names_the_columns_it_cannot_hold(con):
    table = con.sql("SELECT 1 a, [1] l, {'x': 1} s, INTERVAL 1 DAY i, 'x' v").to_arrow_table()
    assert csv_problem(table.schema) == "l (list<l: int32>), s (struct<x: int32>), i (month_day_nano_interval)"
    assert csv_problem(con.sql("SELECT 1 a, 'x' v, DATE '2024-01-01' d").to_arrow_table().schema) is None


@pytest.mark.parametrize("sql", ["SELECT range AS i, 'r' || range AS s FROM range(1000)",
                                 "SELECT range AS i, ('a' || (range % 3))::ENUM_T AS e FROM range(1000)"])
def test_arrow_stream_round_trips_and_marks_truncation(con, sql):
    con.execute("CREATE TYPE IF NOT EXISTS ENUM_T AS ENUM ('a0', 'a1', 'a2')")
    table = con.sql(sql).to_arrow_table()
    encoder = ArrowIpcEncoder(table.schema)
    data = encoder.start() + b"".join(encoder.encode(b) for b in table.to_batches(300))
    data += encoder.mark_truncated(table.schema) + encoder.finish()
    reader = pa.ipc.open_stream(data)
    got, marks = [], []
    while True:
        try:
            batch, meta = reader.read_next_batch_with_custom_metadata()
        except StopIteration:
            break
        got.append(batch)
        marks.append(meta)
    assert pa.Table.from_batches(got, schema=table.schema).equals(table)
    assert marks[-1] is not None and marks[-1][b"agnes.truncated"] == b"true" and marks[0] is None


def test_decimals_are_exact_strings_and_hugeints_exact_numbers(con):
    sql = ("SELECT 12345678901234567890123::DECIMAL(38,0) d38, 5::DECIMAL(4,0) d4, "
           "170141183460469231731687303715884105727::HUGEINT h, 9007199254740993::BIGINT b, "
           "18446744073709551615::UBIGINT ub, NULL::DECIMAL(20,0) n, NULL::HUGEINT nh")
    relation = con.sql(sql)
    types = [str(t) for t in relation.types]
    assert encode_json(rows_of(relation.to_arrow_table(), types)) == (
        b'[["12345678901234567890123","5",170141183460469231731687303715884105727,9007199254740993,'
        b'18446744073709551615,null,null]]')
    # Without DuckDB's types a decimal128 column could be either: kept as exact text.
    assert encode_json(rows_of(con.sql(sql).to_arrow_table()))[:30] == b'[["12345678901234567890123","5'
