"""The `query:` section of the settings: caps of the SQL query API and the serving DuckDB.

Kept apart from settings.py so that file stays small; settings.py wires it in
(file key `query.*`, variables `AGNES_QUERY_*`).
"""

from collections.abc import Callable
from typing import Annotated

import msgspec

from agnes.errors import StartupError

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class QuerySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Caps of the SQL query API (POST /api/query) and the serving DuckDB."""

    timeout_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 30  # JSON answers; interrupted, then 408
    stream_timeout_seconds: Annotated[int, msgspec.Meta(ge=1, le=86400)] = 300  # Arrow/CSV answers
    max_rows: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 100_000  # rows in one JSON answer
    stream_max_rows: Annotated[int, msgspec.Meta(ge=1, le=10**10)] = 5_000_000  # rows in one Arrow/CSV answer
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4  # queries run at once; more wait briefly, then 503
    memory_limit: NonEmpty = "2GB"  # DuckDB memory_limit of the serving catalog
    threads: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4  # DuckDB threads of the serving catalog
    memory_cap: NonEmpty = "auto"  # process RLIMIT_DATA at `agnes serve`: auto (memory_limit + 2GiB) | off | a size


def check_query_settings(query: QuerySettings, where: Callable[[str], str]) -> None:
    from agnes.engine.limits import parse_size

    sizes = {"query.memory_limit": query.memory_limit}
    if query.memory_cap not in ("auto", "off"):
        sizes["query.memory_cap"] = query.memory_cap
    for path, value in sizes.items():
        try:
            parse_size(value)
        except ValueError:
            extra = "; or auto / off" if path == "query.memory_cap" else ""
            raise StartupError("config_invalid", f"{where(path)}: {value!r} is not a size: use e.g. 512MB, "
                               f"2GB, 4GiB{extra}") from None
