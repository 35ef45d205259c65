"""`python -m contract_tests PATH [--source NAME] [--json] [--quick]`.

Plain text (no rich) because connector authors run it with only duckdb and
pyarrow installed. Exit codes: 0 ok, 1 violations, 2 usage error.
`agnes contract check PATH` calls `main` with its own argv.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .spec import PINNED_DUCKDB
from .validator import validate_extract

EXIT_OK, EXIT_VIOLATIONS, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m contract_tests",
        description="Check an extract folder (extract.duckdb + data/) against the Agnes extract contract.",
    )
    p.add_argument("path", help="the extract folder, or its extract.duckdb")
    p.add_argument("--source", metavar="NAME", help="also check the source name the extract will get")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--quick",
        action="store_true",
        help="check the structure only (footers, catalog, row counts) without reading every data page; "
        "the sync always reads everything",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the check and print the report; returns the exit code instead of exiting."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on bad arguments
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    path = Path(args.path)
    if not path.exists():
        msg = f"{path} does not exist (pass the extract folder, or its extract.duckdb)"
        if args.json:
            print(json.dumps({"ok": False, "error": {"code": "path_not_found", "message": msg}}))
        else:
            print(f"error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    report = validate_extract(path, source_name=args.source, deep=not args.quick)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.to_text())
        if report.duckdb_version != PINNED_DUCKDB:
            print(f"note: checked with DuckDB {report.duckdb_version}; Agnes pins {PINNED_DUCKDB}")
    return EXIT_OK if report.ok else EXIT_VIOLATIONS
