"""Checks that turn a bad CSV file into one clear sentence (file, line, problem, fix).

DuckDB's reader is fast but, on a bad file, either guesses (a ragged file
silently becomes one VARCHAR column; duplicate headers are renamed `a_1`) or
reports a long message with the wrong line. So: cheap checks on the head
before reading, an explicit delimiter for DuckDB, and a full Python pass only
when DuckDB fails, to say exactly what is wrong and where.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DELIMITERS = (",", ";", "\t", "|")
HEAD_BYTES = 64 * 1024
_MAGIC = {
    b"PK\x03\x04": "a ZIP archive or an Excel .xlsx workbook; export the sheet as CSV (UTF-8)",
    b"\xd0\xcf\x11\xe0": "an old Excel .xls workbook; export the sheet as CSV (UTF-8)",
    b"\x1f\x8b": "gzip-compressed; decompress it first",
    b"%PDF": "a PDF document",
    b"PAR1": "a Parquet file, not CSV",
}
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
         b"\xfe\xff": "UTF-16"}


class CsvProblem(ValueError):
    """A bad CSV file; str() is the full message for the job log."""


@dataclass(frozen=True)
class Dialect:
    delimiter: str
    header: list[str]


def _count_outside_quotes(line: str, char: str) -> int:
    count, quoted = 0, False
    for c in line:
        if c == '"':
            quoted = not quoted
        elif c == char and not quoted:
            count += 1
    return count


def _delim_name(d: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}[d]


def precheck(path: Path) -> Dialect:
    """Cheap checks on the first 64 KiB; returns the dialect DuckDB must use."""
    name = path.name
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    if not head:
        raise CsvProblem(f"{name}: the file is empty (0 bytes); a CSV file needs a header row")
    for bom, enc in _BOMS.items():
        if head.startswith(bom):
            raise CsvProblem(f"{name}: the file is {enc}-encoded (byte-order mark); re-save it as UTF-8")
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            raise CsvProblem(f"{name}: this is a binary file, not CSV text - it looks like {what}")
    if b"\x00" in head:
        offset = head.index(b"\x00")
        line = head.count(b"\n", 0, offset) + 1
        raise CsvProblem(
            f"{name}: line {line}: NUL byte at offset {offset} - this looks like a binary file, not CSV text"
        )
    text_head = head.removeprefix(b"\xef\xbb\xbf")
    if not text_head.strip():
        raise CsvProblem(f"{name}: the file is empty (only whitespace); a CSV file needs a header row")
    first = text_head.lstrip(b"\r\n").split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header_line = first.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CsvProblem(_encoding_message(name, 1, first, e)) from None
    delimiter = max(DELIMITERS, key=lambda d: _count_outside_quotes(header_line, d))
    header = next(csv.reader([header_line], delimiter=delimiter))
    seen: dict[str, int] = {}
    for i, col in enumerate(header, 1):
        key = col.strip().lower()
        if not key:  # DuckDB would silently call it column<N>
            last = " (the last one: a trailing delimiter?)" if i == len(header) and i > 1 else ""
            raise CsvProblem(
                f"{name}: line 1: column {i} of {len(header)}{last} has an empty name in the header "
                f"(delimiter: {_delim_name(delimiter)}); give every column a name in the first line "
                f"(e.g. column_{i}) or remove the extra delimiter"
            )
        if key in seen:
            raise CsvProblem(
                f"{name}: line 1: duplicate column name {col.strip()!r} in the header (columns {seen[key]} "
                f"and {i}; names are compared case-insensitively); rename one so every column name is unique"
            )
        seen[key] = i
    return Dialect(delimiter, header)


def _encoding_message(name: str, line_no: int, raw: bytes, err: UnicodeDecodeError) -> str:
    bad = raw[err.start]
    try:
        raw.decode("cp1252")
        guess = "Windows-1252/Latin-1 encoded (common for Excel exports)"
    except UnicodeDecodeError:
        guess = "in a legacy 8-bit encoding"
    column = len(raw[: err.start].decode("utf-8", "replace")) + 1
    return (
        f"{name}: line {line_no}: not valid UTF-8 (byte 0x{bad:02x} at column {column}); the file is "
        f"probably {guess} - re-save it as UTF-8 (e.g. `iconv -f cp1252 -t utf-8 in.csv > out.csv`)"
    )


def _text_lines(path: Path, problems: list[str]) -> Iterator[str]:
    """Yield decoded physical lines; stop and record the first encoding/binary problem."""
    with path.open("rb") as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if b"\x00" in raw:
                problems.append(f"{path.name}: line {line_no}: NUL byte - this looks like a binary file, not CSV text")
                return
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(_encoding_message(path.name, line_no, raw, e))
                return


def diagnose(path: Path, dialect: Dialect) -> str | None:
    """Full pass: the first encoding problem or ragged row, with its line; None if none found."""
    problems: list[str] = []
    reader = csv.reader(_text_lines(path, problems), delimiter=dialect.delimiter, strict=True)
    expected = None
    start = 1
    try:
        for record in reader:
            if record and expected is None:
                expected = len(record)
            elif record and len(record) != expected:
                more = "more" if len(record) > expected else "fewer"
                return (
                    f"{path.name}: line {reader.line_num}: {len(record)} fields but the header has {expected} "
                    f"({more} than the header; delimiter: {_delim_name(dialect.delimiter)}) - fix that row, "
                    f"or quote values that contain the delimiter"
                )
            start = reader.line_num + 1
    except csv.Error as e:
        if problems:
            return problems[0]
        if "end of data" in str(e) or "EOF" in str(e):
            return (f"{path.name}: line {start}: a quoted field opened in the record starting here is never "
                    "closed - add the missing closing quote (\") or double the quotes inside the value")
        return f"{path.name}: line {reader.line_num}: {e} - check the quoting on that line"
    return problems[0] if problems else None
