"""The extract contract and the connector SDK.

Connector authors need only this package: `ExtractWriter` writes a valid
extract, `read_context`/`emit` speak the runtime contract
(docs/connector-runtime.md). The server side (running connectors) lives in
`agnes.extract.runner` and is not imported here, so a connector's import
stays light.
"""

from agnes.extract.connector_main import ConnectorContext, ContextError, emit, log, read_context
from agnes.extract.names import (
    SOURCE_NAME_RE,
    TABLE_NAME_RE,
    is_valid_source_name,
    normalize_table_name,
    source_name_problem,
    table_name_problem,
    validate_table_name,
)
from agnes.extract.writer import META_DDL, REMOTE_ATTACH_DDL, ExtractWriter, TableInfo, utc_naive

__all__ = [
    "META_DDL",
    "REMOTE_ATTACH_DDL",
    "SOURCE_NAME_RE",
    "TABLE_NAME_RE",
    "ConnectorContext",
    "ContextError",
    "ExtractWriter",
    "TableInfo",
    "emit",
    "is_valid_source_name",
    "log",
    "normalize_table_name",
    "read_context",
    "source_name_problem",
    "table_name_problem",
    "utc_naive",
    "validate_table_name",
]
