"""Query results out of Arrow: JSON rows, CSV and Arrow IPC stream bytes.

Why column by column: converting each Arrow column to Python once (C code)
and zipping rows is several times faster than row dicts, and msgspec encodes
tuples as arrays. Values keep their JSON types: integers and floats as
numbers (NaN/Inf as null), decimals as strings (no precision lost),
dates/times/timestamps as ISO 8601, intervals as ISO 8601 durations, blobs
as base64, nulls as null. A value Python cannot hold (nanosecond
timestamps, `infinity` dates) falls back to DuckDB/Arrow's text form.
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


def column_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """One Arrow column as JSON-ready Python values."""
    if pa.types.is_interval(column.type):
        return [None if v is None else f"P{v.months}M{v.days}DT{v.nanoseconds / 1e9:g}S" for v in column.to_pylist()]
    try:
        return column.to_pylist()
    except (ValueError, OverflowError, pa.ArrowException):
        try:
            return pc.cast(column, pa.string()).to_pylist()
        except pa.ArrowException:
            return [None if not v.is_valid else str(v) for v in column]


def rows_of(table: pa.Table) -> list[tuple[Any, ...]]:
    return list(zip(*(column_values(c) for c in table.columns), strict=True)) if table.num_columns else []


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


class _Chunks:
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


class ArrowIpcEncoder:
    """The Arrow IPC stream format: schema first, one message per batch, then end-of-stream."""

    def __init__(self, schema: pa.Schema) -> None:
        self._sink = _Chunks()
        self._writer = pa.ipc.new_stream(pa.PythonFile(self._sink, mode="w"), schema)

    def start(self) -> bytes:
        return self._sink.take()

    def encode(self, batch: pa.RecordBatch) -> bytes:
        self._writer.write_batch(batch)
        return self._sink.take()

    def mark_truncated(self, schema: pa.Schema) -> bytes:
        """An empty last batch with metadata `agnes.truncated: true`: the row cap cut the result."""
        self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=schema),
                                 custom_metadata={"agnes.truncated": "true"})
        return self._sink.take()

    def finish(self) -> bytes:
        self._writer.close()
        return self._sink.take()


def ipc_bytes(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> bytes:
    """A whole Arrow IPC stream in memory (small results, tests)."""
    encoder = ArrowIpcEncoder(schema)
    return encoder.start() + b"".join(encoder.encode(b) for b in batches) + encoder.finish()
