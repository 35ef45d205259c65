"""Run a connector (`<folder>/extractor.py`) as a subprocess, safely.

Why a subprocess: connector code (built-in, mounted Tier A, AI-written) must
not share the server's memory, secrets or event loop. The child gets a
minimal environment (the server's own JWT/encryption secrets never reach it),
secrets only as environment variables (never argv), its own process group
(so a timeout or cancel kills grandchildren too), and speaks to us through
JSON lines on stdout. The contract is in docs/connector-runtime.md.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agnes
from agnes.extract.connectors import (
    ConnectorInfo,
    ConnectorNotFound,
    check_requirements,
    find_connector,
    list_connectors,
)

log = logging.getLogger(__name__)
__all__ = ["ConnectorInfo", "ConnectorNotFound", "RunResult", "check_requirements", "connector_env",
           "find_connector", "list_connectors", "run_connector"]

SECRET_ENV_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,127}$")
# Names a secret may not take: ours, and those that change how Python or the loader behave.
_FORBIDDEN_ENV = re.compile(r"^(AGNES_|PYTHON|LD_|DYLD_)|^(PATH|HOME|LANG|LC_ALL|TZ|IFS|SHELL)$")
# Harmless parent variables a connector may need to reach the network.
_PASSTHROUGH = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "TMPDIR")
TAIL_LINES = 200
MAX_EVENTS = 10_000
MAX_LINE_BYTES = 1 << 20
_SRC_DIR = str(Path(agnes.__file__).resolve().parent.parent)
_LAUNCH = Path(__file__).resolve().parent / "launch.py"  # run by path: see launch.py

OnEvent = Callable[[dict[str, Any]], Awaitable[None] | None]


@dataclass
class RunResult:
    status: str  # 'succeeded' | 'failed' | 'timeout' | 'cancelled'
    returncode: int | None = None
    duration_s: float = 0.0
    error: str | None = None
    error_code: str | None = None  # e.g. 'missing_requirements', 'exit_code', 'timeout'
    events: list[dict[str, Any]] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)  # non-JSON stdout lines
    stderr_tail: list[str] = field(default_factory=list)
    tables_done: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables_failed: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def connector_env(
    *, out_dir: Path, config: dict[str, Any], secrets: dict[str, str], tables: list[str] | None,
    source_name: str, state_dir: Path, previous_dir: Path | None = None,
) -> dict[str, str]:
    """The child's whole environment: minimal on purpose, secrets only here."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(state_dir)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "TZ": "UTC",
        "PYTHONPATH": _SRC_DIR,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update({k: os.environ[k] for k in _PASSTHROUGH if k in os.environ})
    for key, value in secrets.items():
        if not SECRET_ENV_RE.match(key) or _FORBIDDEN_ENV.search(key):
            raise ValueError(f"secret name {key!r} is not allowed; use an upper-case name like KEBOOLA_STORAGE_TOKEN")
        env[key] = str(value)
    env.update({
        "AGNES_OUTPUT_DIR": str(out_dir),
        "AGNES_CONFIG_JSON": json.dumps(config),
        "AGNES_TABLES": json.dumps(list(tables or [])),
        "AGNES_SOURCE_NAME": source_name,
        "AGNES_STATE_DIR": str(state_dir),
    })
    if previous_dir is not None:  # read-only: the published run this one replaces (incremental connectors)
        env["AGNES_PREVIOUS_RUN_DIR"] = str(previous_dir)
    return env


class _Collector:
    """Turns the child's output into events, a log tail and per-table outcomes."""

    def __init__(self, result: RunResult, on_event: OnEvent | None, secrets: dict[str, str]) -> None:
        self.result, self.on_event = result, on_event
        self.stdout: deque[str] = deque(maxlen=TAIL_LINES)
        self.stderr: deque[str] = deque(maxlen=TAIL_LINES)
        self.secrets = sorted((s for s in secrets.values() if len(s) >= 4), key=len, reverse=True)

    def _redact(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line

    async def stdout_line(self, line: str) -> None:
        line = self._redact(line)
        event = None
        if line.lstrip().startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                event = None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            self.stdout.append(line)
            return
        if len(self.result.events) < MAX_EVENTS:
            self.result.events.append(event)
        table = event.get("table")
        if isinstance(table, str) and event["event"] == "table_done":
            self.result.tables_done[table] = event
            self.result.tables_failed.pop(table, None)
        elif isinstance(table, str) and event["event"] == "table_failed":
            self.result.tables_failed[table] = event
            self.result.tables_done.pop(table, None)
        if self.on_event is not None:
            try:
                maybe = self.on_event(event)
                if inspect.isawaitable(maybe):
                    await maybe
            except Exception:
                log.exception("on_event callback failed for %s", event.get("event"))

    async def stderr_line(self, line: str) -> None:
        self.stderr.append(self._redact(line))


async def _pump(stream: asyncio.StreamReader, handle: Callable[[str], Awaitable[None]]) -> None:
    buf = bytearray()
    while chunk := await stream.read(65536):
        buf += chunk
        while (i := buf.find(b"\n")) >= 0:
            await handle(buf[:i].decode("utf-8", "replace").rstrip("\r"))
            del buf[: i + 1]
        if len(buf) > MAX_LINE_BYTES:
            await handle(buf[:MAX_LINE_BYTES].decode("utf-8", "replace") + " ...[line truncated]")
            buf.clear()
    if buf:
        await handle(buf.decode("utf-8", "replace"))


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Wait for the child itself to exit. Not `proc.wait()`: that also waits for
    the pipes to close, which a grandchild holding stdout can postpone forever."""
    while proc.returncode is None:  # noqa: ASYNC110 - asyncio offers no exit-only event to wait on
        await asyncio.sleep(0.05)


async def _stop(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the whole process group, SIGKILL it after `grace` seconds."""
    _killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(_exited(proc), grace)
    except TimeoutError:
        pass
    _killpg(proc.pid, signal.SIGKILL)
    await _exited(proc)


async def run_connector(
    info: ConnectorInfo,
    out_dir: Path,
    *,
    config: dict[str, Any],
    secrets: dict[str, str],
    timeout: float,  # noqa: ASYNC109 - the connector's budget, not an asyncio timeout
    on_event: OnEvent | None = None,
    cancel: asyncio.Event | None = None,
    tables: list[str] | None = None,
    source_name: str | None = None,
    state_dir: Path | None = None,
    kill_grace: float = 5.0,
    previous_dir: Path | None = None,
) -> RunResult:
    """Run `info` into `out_dir`. Connector failures are a RunResult, never an exception.

    `state_dir` is the source's persistent folder (a throw-away one if None); `previous_dir` the
    published run this one will replace (AGNES_PREVIOUS_RUN_DIR; never written to).
    """
    started = time.monotonic()
    problem = check_requirements(info)
    if problem:
        return RunResult("failed", error=problem, error_code="missing_requirements")
    if cancel is not None and cancel.is_set():
        return RunResult("cancelled", error="cancelled before start", error_code="cancelled")
    with ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agnes-state-")))
        out_dir, state_dir = _make_dirs(out_dir, state_dir)
        env = connector_env(out_dir=out_dir, config=config, secrets=secrets, tables=tables,
                            source_name=source_name or info.name, state_dir=state_dir,
                            previous_dir=previous_dir)
        result = RunResult("failed")
        collector = _Collector(result, on_event, secrets)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(_LAUNCH), str(os.getpid()), "extractor.py",
                cwd=str(info.path), env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            )
        except OSError as e:
            return RunResult("failed", error=f"connector {info.name!r} could not be started: {e}",
                             error_code="spawn_failed")
        pumps = [asyncio.create_task(_pump(proc.stdout, collector.stdout_line)),
                 asyncio.create_task(_pump(proc.stderr, collector.stderr_line))]
        waiter = asyncio.create_task(_exited(proc))
        canceller = asyncio.create_task(cancel.wait()) if cancel is not None else None
        try:
            watched = {waiter} | ({canceller} if canceller else set())
            done, _ = await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                result.status = "succeeded" if proc.returncode == 0 else "failed"
            else:
                result.status = "cancelled" if canceller in done else "timeout"
                await _stop(proc, kill_grace)
        finally:
            for task in (waiter, canceller):
                if task is not None:
                    task.cancel()
            if proc.returncode is None:  # we were cancelled ourselves
                await asyncio.shield(_stop(proc, kill_grace))
            _killpg(proc.pid, signal.SIGKILL)  # nothing of the connector may outlive it
            _, pending = await asyncio.wait(pumps, timeout=5)
            for task in pending:
                task.cancel()
        result.returncode = proc.returncode
        result.duration_s = round(time.monotonic() - started, 3)
        result.log_tail, result.stderr_tail = list(collector.stdout), list(collector.stderr)
        result.error, result.error_code = _explain(info, result, timeout)
        return result


def _make_dirs(out_dir: Path, state_dir: Path) -> tuple[Path, Path]:
    out_dir, state_dir = Path(out_dir).resolve(), Path(state_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, state_dir


def _explain(info: ConnectorInfo, r: RunResult, timeout: float) -> tuple[str | None, str | None]:
    tail = "\n".join(r.stderr_tail[-20:])
    if r.status == "succeeded":
        return None, None
    if r.status == "timeout":
        return (f"connector {info.name!r} did not finish within {timeout:g}s and was stopped; raise the "
                "timeout or extract fewer tables (AGNES_TABLES)", "timeout")
    if r.status == "cancelled":
        return f"connector {info.name!r} was cancelled", "cancelled"
    rc = r.returncode or 0
    how = f"was killed by signal {-rc} (SIGKILL often means out of memory)" if rc < 0 else f"exited with code {rc}"
    return (f"connector {info.name!r} {how}" + (f"; last stderr lines:\n{tail}" if tail else "; stderr was empty"),
            "exit_code")
