"""Helpers for connector authors: read the run context, report progress.

Agnes runs `extractor.py` as a child process and talks to it only through
environment variables (in) and JSON lines on stdout (out); see
docs/connector-runtime.md. These helpers keep that contract in one place so
an extractor stays a short script.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_OUTPUT_DIR = "AGNES_OUTPUT_DIR"
ENV_CONFIG_JSON = "AGNES_CONFIG_JSON"
ENV_TABLES = "AGNES_TABLES"
ENV_SOURCE_NAME = "AGNES_SOURCE_NAME"
ENV_STATE_DIR = "AGNES_STATE_DIR"
ENV_PREVIOUS_RUN_DIR = "AGNES_PREVIOUS_RUN_DIR"


class ContextError(RuntimeError):
    """The environment Agnes sets for a connector is missing or malformed."""


@dataclass(frozen=True)
class ConnectorContext:
    output_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)  # empty = all tables
    source_name: str = ""
    state_dir: Path | None = None
    previous_dir: Path | None = None  # the published run this one replaces (read-only), for incremental merges

    def wants(self, table: str) -> bool:
        """True when this run should extract `table` (AGNES_TABLES empty = all)."""
        return not self.tables or table in self.tables

    def secret(self, env_name: str) -> str:
        """A secret passed in the child's environment; a clear error when absent."""
        value = os.environ.get(env_name)
        if not value:
            raise ContextError(
                f"secret {env_name} is not set; configure it for source {self.source_name or '<name>'} "
                f"(POST /api/admin/configure) or, running by hand, export {env_name}=..."
            )
        return value


def _json_env(name: str, default: Any, kind: type) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ContextError(f"{name} is not valid JSON ({e}); Agnes sets it, check how you ran the connector") from e
    if not isinstance(value, kind):
        raise ContextError(f"{name} must be a JSON {kind.__name__}, got {type(value).__name__}")
    return value


def read_context() -> ConnectorContext:
    """Read what Agnes passed in the environment (see docs/connector-runtime.md)."""
    out = os.environ.get(ENV_OUTPUT_DIR)
    if not out:
        raise ContextError(
            f"{ENV_OUTPUT_DIR} is not set: Agnes sets it when it runs a connector; to run by hand use "
            f"`{ENV_OUTPUT_DIR}=./out python extractor.py` and check it with `python -m contract_tests ./out`"
        )
    tables = _json_env(ENV_TABLES, [], list)
    if not all(isinstance(t, str) for t in tables):
        raise ContextError(f"{ENV_TABLES} must be a JSON list of table names")
    state = os.environ.get(ENV_STATE_DIR)
    previous = os.environ.get(ENV_PREVIOUS_RUN_DIR)
    return ConnectorContext(
        output_dir=Path(out),
        config=_json_env(ENV_CONFIG_JSON, {}, dict),
        tables=tables,
        source_name=os.environ.get(ENV_SOURCE_NAME, ""),
        state_dir=Path(state) if state else None,
        previous_dir=Path(previous) if previous else None,
    )


def emit(event: str, **fields: Any) -> None:
    """Print one progress event as a JSON line on stdout (flushed at once)."""
    line = json.dumps({"event": event, **fields}, default=str, ensure_ascii=False)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    """A human log line (stderr): kept in the job log, never parsed."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
