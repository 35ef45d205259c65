"""ExtractWriter: the connector SDK that makes the extract contract hard to break.

A connector only hands over data; the writer picks file names, writes zstd
parquet atomically (temp name + rename, so a crash never leaves a
half-written `data/<table>.parquet`), counts rows and bytes itself, and on a
clean exit writes `_meta` and `_remote_attach` with the frozen contract SQL.
If the `with` block raises, no `_meta` is written: the extract is then
invalid on purpose and the job reports the connector's error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from contract_tests.checks.remote import view_query, view_refs
from contract_tests.spec import META_SQL, REMOTE_ATTACH_SQL

from agnes.extract.names import check_remote_attach, validate_table_name

# The frozen contract (design.md "The extract contract"); changing it is BREAKING.
# The DDL is the spec files of contract_tests verbatim, never a copy of them.
META_DDL = META_SQL.read_text(encoding="utf-8")
REMOTE_ATTACH_DDL = REMOTE_ATTACH_SQL.read_text(encoding="utf-8")
_OTHER_DBS = (
    "SELECT database_name FROM duckdb_databases() "
    "WHERE NOT internal AND database_name <> current_database()"
)

@dataclass(frozen=True)
class TableInfo:
    """One `_meta` row, as the writer measured it."""

    name: str
    description: str | None
    rows: int | None
    size_bytes: int | None
    extracted_at: datetime
    query_mode: str  # 'local' | 'remote'
    path: Path | None  # data file or partition folder; None for remote tables


def utc_naive(value: datetime | None) -> datetime:
    """The contract stores naive timestamps meaning UTC; None means now."""
    if value is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if not isinstance(value, datetime):
        raise TypeError(f"extracted_at must be a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def sql_literal(text: str | os.PathLike[str]) -> str:
    """Quote a string (e.g. a file path) as a SQL literal."""
    return "'" + str(text).replace("'", "''") + "'"


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _atomic(final: Path) -> Iterator[Path]:
    """Yield a hidden temp path; rename it to `final` only if the block succeeds."""
    tmp = final.with_name(f".{final.name}.part")
    _remove(tmp)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


class ExtractWriter:
    """Writes `out_dir/extract.duckdb` + `out_dir/data/` for one connector run."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir).resolve()
        self.data_dir = self.out_dir / "data"
        self.db_path = self.out_dir / "extract.duckdb"
        if self.db_path.exists():
            raise FileExistsError(
                f"{self.db_path} already exists; every run writes a fresh folder - "
                "point ExtractWriter at an empty directory (AGNES_OUTPUT_DIR always is one)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.db_path))
        self._tables: dict[str, TableInfo] = {}
        self._attach: dict[str, tuple[str, str, str, str | None]] = {}
        self._closed = False

    def __enter__(self) -> ExtractWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def tables(self) -> list[TableInfo]:
        return list(self._tables.values())

    def add_arrow(
        self,
        name: str,
        data: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch],
        *,
        description: str | None = None,
        extracted_at: datetime | None = None,
        schema: pa.Schema | None = None,
    ) -> TableInfo:
        """Stream an Arrow table/reader (or batches + `schema`) to `data/<name>.parquet`."""
        at = self._check_new(name, extracted_at)
        if isinstance(data, pa.Table):
            data = data.to_reader()
        elif not isinstance(data, pa.RecordBatchReader) and hasattr(data, "__arrow_c_stream__"):
            data = pa.RecordBatchReader.from_stream(data)
        if isinstance(data, pa.RecordBatchReader):
            schema = data.schema
        elif schema is None:
            raise TypeError("add_arrow needs a pyarrow Table/RecordBatchReader, or batches plus schema=")
        final = self.data_dir / f"{name}.parquet"
        with _atomic(final) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as pw:
            for batch in data:
                pw.write_batch(batch)
        return self._register_local(name, final, description, at)

    def add_relation(
        self,
        name: str,
        query: duckdb.DuckDBPyRelation | str,
        *,
        description: str | None = None,
        extracted_at: datetime | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> TableInfo:
        """Write a DuckDB relation (on its own connection) or a SELECT to `data/<name>.parquet`.

        A SQL string runs on `con`, else on this writer's connection `w.con`
        (ATTACH or create temp views there as you need).
        """
        at = self._check_new(name, extracted_at)
        if not isinstance(query, str | duckdb.DuckDBPyRelation):
            raise TypeError("add_relation needs a DuckDBPyRelation or a SQL string")
        final = self.data_dir / f"{name}.parquet"
        with _atomic(final) as tmp:
            if isinstance(query, str):
                (con or self.con).execute(
                    f"COPY ({query.strip().rstrip(';')}) TO {sql_literal(tmp)} (FORMAT parquet, COMPRESSION zstd)"
                )
            else:
                query.to_parquet(str(tmp), compression="zstd")
        return self._register_local(name, final, description, at)

    def add_parquet_files(
        self,
        name: str,
        paths: Sequence[str | os.PathLike[str]],
        *,
        partitioned: bool = True,
        move: bool = False,
        description: str | None = None,
        extracted_at: datetime | None = None,
    ) -> TableInfo:
        """Adopt parquet files: `data/<name>/part-NNNNN.parquet` (or `data/<name>.parquet`)."""
        at = self._check_new(name, extracted_at)
        files = [Path(p) for p in paths]
        if not files:
            raise ValueError(f"table {name!r}: add_parquet_files got no files; skip the table instead")
        if not partitioned and len(files) != 1:
            raise ValueError(f"table {name!r}: {len(files)} files need partitioned=True")
        first = None
        for f in files:
            try:
                schema = pq.read_schema(f)
            except Exception as e:
                raise ValueError(f"table {name!r}: {f} is not a readable parquet file: {e}") from e
            if first is None:
                first = schema
            elif not schema.equals(first, check_metadata=False):
                raise ValueError(
                    f"table {name!r}: {f} has another schema than {files[0]}; all parts of one table must "
                    f"share column names and types.\n  {files[0].name}: {first}\n  {f.name}: {schema}"
                )
        transfer = shutil.move if move else shutil.copyfile
        final = self.data_dir / (name if partitioned else f"{name}.parquet")
        with _atomic(final) as tmp:
            if not partitioned:
                transfer(files[0], tmp)
            else:
                tmp.mkdir()
                for i, f in enumerate(files):
                    transfer(f, tmp / f"part-{i:05d}.parquet")
        return self._register_local(name, final, description, at)

    def declare_remote_attach(self, *, alias: str, extension: str, url: str, token_env: str | None) -> None:
        """Declare an ATTACH the engine performs at serving time (secret read from `token_env`)."""
        check_remote_attach(alias, extension, url, token_env)
        if alias in self._attach:
            raise ValueError(f"alias {alias!r} is already declared; declare each alias once")
        self._attach[alias] = (alias, extension, url, token_env)

    def add_remote(
        self,
        name: str,
        *,
        alias: str,
        select_sql: str,
        description: str | None = None,
        extracted_at: datetime | None = None,
    ) -> TableInfo:
        """Create view `<name>` AS `select_sql`, read through `alias` at query time.

        DuckDB binds a view when it is created, so `alias` must be attached on
        `w.con` now (e.g. `w.con.execute("ATTACH '...' AS pg (TYPE postgres, READ_ONLY)")`).
        Rows and size stay NULL: counting would mean a full remote scan.
        """
        at = self._check_new(name, extracted_at)
        if alias not in self._attach:
            raise ValueError(
                f"table {name!r}: alias {alias!r} is not declared; call "
                "declare_remote_attach(alias=..., extension=..., url=..., token_env=...) first"
            )
        attached = {r[0] for r in self.con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
        if alias not in attached:
            ext = self._attach[alias][1]
            raise ValueError(
                f"table {name!r}: alias {alias!r} is not attached on w.con; DuckDB binds a view when "
                f"it is created, so ATTACH first: w.con.execute(\"ATTACH '<url>' AS {alias} (TYPE {ext})\")"
            )
        self.con.execute(f'CREATE VIEW "{name}" AS {select_sql}')
        self._check_remote_view(name)
        info = TableInfo(name, description, None, None, at, "remote", None)
        self._tables[name] = info
        return info

    def _check_remote_view(self, name: str) -> None:
        """The validator's rule, applied now: a remote view reads only declared aliases."""
        sql = self.con.execute(
            "SELECT sql FROM duckdb_views() WHERE database_name = current_database() AND view_name = ?", [name]
        ).fetchone()[0]
        ast = view_query(self.con, sql)
        if ast is None:
            self.con.execute(f'DROP VIEW "{name}"')
            raise ValueError(f"table {name!r}: the SQL of the view cannot be parsed back by DuckDB, so its "
                             "references cannot be checked; simplify select_sql")
        bad = [r.shown for r in view_refs(ast) if not (r.kind == "table" and r.alias in self._attach)]
        if bad:
            self.con.execute(f'DROP VIEW "{name}"')
            raise ValueError(
                f"table {name!r}: the view reads {', '.join(dict.fromkeys(bad))}; a remote view may read only "
                f"from declared aliases ({', '.join(sorted(self._attach))}) as <alias>.<schema>.<table> — declare "
                "the alias with declare_remote_attach(...) or use add_arrow/add_relation for local data"
            )

    def close(self) -> None:
        """Write `_meta` + `_remote_attach`, checkpoint and close. Idempotent."""
        if self._closed:
            return
        con = self.con
        try:
            for (db,) in con.execute(_OTHER_DBS).fetchall():
                con.execute(f'DETACH "{db}"')
            con.execute(META_DDL)
            con.execute(REMOTE_ATTACH_DDL)
            if self._tables:
                meta = [astuple(t)[:6] for t in self.tables]  # the _meta columns, in order
                con.executemany("INSERT INTO _meta VALUES (?, ?, ?, ?, ?, ?)", meta)
            if self._attach:
                con.executemany("INSERT INTO _remote_attach VALUES (?, ?, ?, ?)", list(self._attach.values()))
            con.execute("CHECKPOINT")
        finally:
            self._closed = True
            con.close()

    def abort(self) -> None:
        """Close without `_meta`: a failed run must not look like a valid extract."""
        if not self._closed:
            self._closed = True
            self.con.close()

    def _check_new(self, name: str, extracted_at: datetime | None) -> datetime:
        if self._closed:
            raise RuntimeError("this ExtractWriter is closed; open a new one for a new extract")
        validate_table_name(name)
        if name in self._tables:
            raise ValueError(
                f"table {name!r} was already added to this extract; table names must be unique - give the "
                "second one another name (two native names that normalise alike must be reported, not merged)"
            )
        return utc_naive(extracted_at)

    def _register_local(self, name: str, path: Path, description: str | None, at: datetime) -> TableInfo:
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        size = sum(f.stat().st_size for f in files)
        info = TableInfo(name, description, rows, size, at, "local", path)
        self._tables[name] = info
        return info
