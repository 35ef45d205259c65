"""What a contract check returns: every violation with a concrete fix.

Plain dataclasses (no agnes, no msgspec) so connector authors need only
duckdb + pyarrow; `to_dict()` gives the JSON shape `--json` prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

DataKind = Literal["parquet_file", "parquet_dir", "base_table", "remote_view"]


@dataclass(frozen=True)
class Violation:
    """One broken rule. `code` is a stable snake_case id; `fix` says what to do."""

    code: str
    table: str | None
    message: str
    fix: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TableInfo:
    """One `_meta` row as the validator saw it.

    `rows` is the count found in the data (parquet metadata or the base
    table), `meta_rows` what `_meta.rows` declares; `data_kind` is None when
    no data was found.
    """

    name: str
    query_mode: str | None
    rows: int | None = None
    meta_rows: int | None = None
    data_kind: DataKind | None = None
    extracted_at: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Report:
    """Result of `validate_extract`; `ok` is True only with no violations."""

    path: str
    source_name: str | None = None
    violations: list[Violation] = field(default_factory=list)
    tables: list[TableInfo] = field(default_factory=list)
    duckdb_version: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def codes(self) -> list[str]:
        return [v.code for v in self.violations]

    def add(self, code: str, table: str | None, message: str, fix: str) -> None:
        self.violations.append(Violation(code, table, message, fix))

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "path": self.path,
            "source_name": self.source_name,
            "duckdb_version": self.duckdb_version,
            "violations": [v.to_dict() for v in self.violations],
            "tables": [t.to_dict() for t in self.tables],
        }

    def to_text(self) -> str:
        """Human-readable listing: each violation with its fix, then the tables."""
        lines = [f"contract check: {self.path}"]
        if self.source_name:
            lines[0] += f" (source {self.source_name})"
        if self.ok:
            lines.append(f"OK: the extract meets the contract ({len(self.tables)} table(s)).")
        else:
            lines.append(f"FAILED: {len(self.violations)} violation(s).")
            for i, v in enumerate(self.violations, 1):
                where = f" {v.table}:" if v.table else ""
                lines.append(f"{i:>3}. [{v.code}]{where} {v.message}")
                lines.append(f"     fix: {v.fix}")
        if self.tables:
            lines.append("tables:")
            for t in self.tables:
                rows = "?" if t.rows is None else str(t.rows)
                lines.append(f"  {t.name:<32} {t.query_mode or '?':<7} {t.data_kind or 'no data':<13} rows={rows}")
        return "\n".join(lines)
