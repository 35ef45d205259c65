"""Query results out of Arrow: JSON rows, CSV and Arrow IPC stream bytes.

Why column by column: converting each Arrow column to Python once (C code)
and zipping rows is several times faster than row dicts, and msgspec encodes
tuples as arrays. Values keep their JSON types: integers (HUGEINT too, e.g.
`sum()` of integers) and floats as numbers (NaN/Inf as null); every
DECIMAL(p,s) -- DECIMAL(38,0) too -- as a string, so no JSON parser rounds it.
Arrow hands DECIMAL(38,0) and HUGEINT over alike (decimal128), so the caller
passes DuckDB's column types to tell them apart;
dates/times/timestamps as ISO 8601, intervals as ISO 8601 durations, blobs as base64, nulls as null;
DuckDB's infinite dates are "infinity" and "-infinity". Anything else
Python cannot hold falls back to Arrow's text.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

ARROW_STREAM = "application/vnd.apache.arrow.stream"
_ENCODER = msgspec.json.Encoder(decimal_format="string")


_FRACTION = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def _iso_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Dates, times and timestamps as ISO 8601 text in Arrow's C++ (10x faster than Python datetimes);
    a zero fraction is dropped and UTC timestamps end in Z, as msgspec writes them."""
    type_, utc = column.type, False
    if pa.types.is_timestamp(type_) and type_.tz is not None:
        column, utc = column.cast(pa.timestamp(type_.unit)), True  # stored as UTC: drop the zone, add Z
    raw = text = pc.cast(column, pa.string())
    if pa.types.is_timestamp(type_):
        text = pc.replace_substring(text, " ", "T", max_replacements=1)
    digits = _FRACTION.get(getattr(type_, "unit", ""), 0)
    if digits and not pa.types.is_date(type_):
        text = pc.replace_substring(text, "." + "0" * digits, "")
    if utc:
        text = pc.binary_join_element_wise(text, "Z", "")
    if pc.any(pc.starts_with(raw, "<value out of range")).as_py():  # DuckDB's +-infinity sentinels
        text = pc.if_else(pc.starts_with(raw, "<value out of range: -"), "-infinity",
                          pc.if_else(pc.starts_with(raw, "<value out of range"), "infinity", text))
    return text


_HUGE = ("HUGEINT", "UHUGEINT")


def column_values(column: pa.ChunkedArray | pa.Array, duck_type: str | None = None) -> list[Any]:
    """One Arrow column as JSON-ready Python values (`duck_type`: DuckDB's type of the column)."""
    type_ = column.type
    try:
        if pa.types.is_decimal(type_) and duck_type in _HUGE:  # an integer: exact as a JSON number
            return [None if v is None else int(v) for v in column.to_pylist()]
        if pa.types.is_decimal(type_):  # text keeps every digit
            return pc.cast(column, pa.string()).to_pylist()
        if pa.types.is_date(type_) or pa.types.is_timestamp(type_) or pa.types.is_time(type_):
            return _iso_text(column).to_pylist()
    except pa.ArrowException:
        pass  # out-of-range values: the generic path below
    if pa.types.is_interval(type_):
        return [None if v is None else f"P{v.months}M{v.days}DT{v.nanoseconds / 1e9:g}S" for v in column.to_pylist()]
    try:
        return column.to_pylist()
    except (ValueError, OverflowError, pa.ArrowException):
        try:
            return pc.cast(column, pa.string()).to_pylist()
        except pa.ArrowException:
            return [None if not v.is_valid else str(v) for v in column]


def rows_of(table: pa.Table, duck_types: list[str] | None = None) -> list[tuple[Any, ...]]:
    types = duck_types or [None] * table.num_columns
    columns = (column_values(c, t) for c, t in zip(table.columns, types, strict=True))
    return list(zip(*columns, strict=True)) if table.num_columns else []


def encode_json(value: Any) -> bytes:
    return _ENCODER.encode(value)


def csv_problem(schema: pa.Schema) -> str | None:
    """Columns the CSV writer cannot hold (lists, structs, maps, intervals), or None."""
    bad = []
    for field in schema:
        try:
            pa_csv.write_csv(pa.table({field.name: pa.nulls(1, field.type)}), io.BytesIO())
        except (pa.ArrowException, TypeError):
            bad.append(f"{field.name} ({field.type})")
    return ", ".join(bad) or None


class CsvEncoder:
    """RFC 4180 CSV (header row first), one chunk of bytes per record batch."""

    def __init__(self) -> None:
        self._header = True

    def encode(self, batch: pa.RecordBatch) -> bytes:
        sink = io.BytesIO()
        pa_csv.write_csv(batch, sink, write_options=pa_csv.WriteOptions(include_header=self._header))
        self._header = False
        return sink.getvalue()

    def header(self, schema: pa.Schema) -> bytes:
        return self.encode(pa.RecordBatch.from_pylist([], schema=schema)) if self._header else b""


class ChunkSink:
    """A write-only file object that hands back what was written since the last `take`."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # IPC end-of-stream: continuation marker, length 0


def _has_dictionary(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        return True
    return any(_has_dictionary(type_.field(i).type) for i in range(type_.num_fields))


class ArrowIpcEncoder:
    """The Arrow IPC stream format: schema first, one message per batch, then end-of-stream.

    Without dictionary columns each batch is serialized straight to one buffer (3x faster than a
    stream writer on a Python file); dictionaries need the writer, which also emits their batches.
    """

    def __init__(self, schema: pa.Schema) -> None:
        self._schema = schema
        self._sink = ChunkSink()
        self._writer = None
        if any(_has_dictionary(f.type) for f in schema):
            self._writer = pa.ipc.new_stream(pa.PythonFile(self._sink, mode="w"), schema)

    def start(self) -> bytes:
        return self._sink.take() if self._writer else self._schema.serialize().to_pybytes()

    def encode(self, batch: pa.RecordBatch) -> bytes:
        if self._writer is None:
            return batch.serialize().to_pybytes()
        self._writer.write_batch(batch)
        return self._sink.take()

    def mark_truncated(self, schema: pa.Schema) -> bytes:
        """An empty last batch with metadata `agnes.truncated: true`: the row cap cut the result."""
        empty, meta = pa.RecordBatch.from_pylist([], schema=schema), {"agnes.truncated": "true"}
        if self._writer is not None:
            self._writer.write_batch(empty, custom_metadata=meta)
            return self._sink.take()
        whole = pa.BufferOutputStream()  # a one-batch stream; keep its batch message only
        with pa.ipc.new_stream(whole, schema) as writer:
            writer.write_batch(empty, custom_metadata=meta)
        data = whole.getvalue().to_pybytes()
        return data[len(schema.serialize()):-len(_EOS)]

    def finish(self) -> bytes:
        if self._writer is None:
            return _EOS
        self._writer.close()
        return self._sink.take()


def ipc_bytes(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> bytes:
    """A whole Arrow IPC stream in memory (small results, tests)."""
    encoder = ArrowIpcEncoder(schema)
    return encoder.start() + b"".join(encoder.encode(b) for b in batches) + encoder.finish()
