"""run_connector with real subprocesses: events, logs, kills, env hygiene, requirements."""

from __future__ import annotations

import asyncio
import hashlib
import json
import textwrap
import time
from pathlib import Path

import duckdb
import pytest
from contract_tests.validator import validate_extract

from agnes.extract.runner import (
    ConnectorInfo,
    ConnectorNotFound,
    connector_env,
    find_connector,
    list_connectors,
    run_connector,
)

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "connectors"
SECRET = "s3cr3t-token-value-0123456789"


def make_connector(base: Path, name: str, code: str, requirements: str | None = None) -> ConnectorInfo:
    folder = base / name
    folder.mkdir(parents=True)
    (folder / "extractor.py").write_text(textwrap.dedent(code))
    if requirements is not None:
        (folder / "requirements.txt").write_text(textwrap.dedent(requirements))
    return ConnectorInfo(name, folder, "custom")


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_dead(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


async def run(info: ConnectorInfo, out: Path, **kw) -> object:
    kw.setdefault("config", {})
    kw.setdefault("secrets", {})
    kw.setdefault("timeout", 60)
    return await run_connector(info, out, **kw)


async def test_events_logs_and_stderr_tail(tmp_path: Path) -> None:
    info = make_connector(tmp_path, "chatty", """
        import sys
        from agnes.extract import emit
        print("plain log line")
        emit("table_started", table="orders")
        emit("table_done", table="orders", rows=10)
        emit("table_failed", table="bad", error="boom")
        print('{"not": "an event"}')
        print("[1, 2]")
        for i in range(500):
            print(f"err {i}", file=sys.stderr)
    """)
    seen_async: list[dict] = []

    async def on_event(event: dict) -> None:
        await asyncio.sleep(0)
        seen_async.append(event)

    result = await run(info, tmp_path / "out", on_event=on_event)
    assert result.status == "succeeded" and result.returncode == 0 and result.ok
    assert [e["event"] for e in result.events] == ["table_started", "table_done", "table_failed"]
    assert seen_async == result.events
    assert result.tables_done == {"orders": {"event": "table_done", "table": "orders", "rows": 10}}
    assert result.tables_failed["bad"]["error"] == "boom"
    assert result.log_tail == ["plain log line", '{"not": "an event"}', "[1, 2]"]
    assert len(result.stderr_tail) == 200 and result.stderr_tail[-1] == "err 499" and result.stderr_tail[0] == "err 300"

    seen_sync: list[dict] = []
    again = await run(info, tmp_path / "out2", on_event=seen_sync.append)
    assert seen_sync == again.events


async def test_failure_reports_exit_code_and_stderr(tmp_path: Path) -> None:
    info = make_connector(tmp_path, "broken", """
        import sys
        print("connecting to the API", file=sys.stderr)
        raise SystemExit("401 Unauthorized: check KEBOOLA_STORAGE_TOKEN")
    """)
    result = await run(info, tmp_path / "out")
    assert result.status == "failed" and result.returncode == 1 and result.error_code == "exit_code"
    assert "exited with code 1" in result.error and "401 Unauthorized" in result.error
    assert result.stderr_tail[-1].startswith("401 Unauthorized")


GRANDCHILD = """
    import os, subprocess, sys, time
    from agnes.extract import emit
    {prelude}
    child = subprocess.Popen(["sleep", "300"])
    emit("pids", me=os.getpid(), grandchild=child.pid)
    time.sleep(300)
"""


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    info = make_connector(tmp_path, "slow", GRANDCHILD.format(prelude=""))
    started = time.monotonic()
    result = await run(info, tmp_path / "out", timeout=2)
    assert result.status == "timeout" and result.error_code == "timeout"
    assert "did not finish within 2s" in result.error
    assert time.monotonic() - started < 15
    pids = result.events[0]
    assert wait_dead([pids["me"], pids["grandchild"]]), "connector or its grandchild survived the timeout"


async def test_sigterm_ignored_means_sigkill_after_grace(tmp_path: Path) -> None:
    prelude = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    info = make_connector(tmp_path, "stubborn", GRANDCHILD.format(prelude=prelude))
    started = time.monotonic()
    result = await run(info, tmp_path / "out", timeout=1.5, kill_grace=0.5)
    assert result.status == "timeout" and result.returncode == -9
    assert time.monotonic() - started < 10
    assert wait_dead([result.events[0]["me"], result.events[0]["grandchild"]])


async def test_cancel_stops_the_run(tmp_path: Path) -> None:
    info = make_connector(tmp_path, "cancellable", GRANDCHILD.format(prelude=""))
    cancel = asyncio.Event()
    result_task = asyncio.create_task(run(info, tmp_path / "out", cancel=cancel, on_event=lambda e: cancel.set()))
    result = await asyncio.wait_for(result_task, 15)
    assert result.status == "cancelled" and result.error_code == "cancelled"
    assert wait_dead([result.events[0]["me"], result.events[0]["grandchild"]])


async def test_leftover_grandchild_after_normal_exit_is_killed(tmp_path: Path) -> None:
    info = make_connector(tmp_path, "leaky", """
        import subprocess
        from agnes.extract import emit
        child = subprocess.Popen(["sleep", "300"])  # inherits our stdout: would block EOF forever
        emit("pids", grandchild=child.pid)
    """)
    started = time.monotonic()
    result = await run(info, tmp_path / "out")
    assert result.status == "succeeded"
    assert time.monotonic() - started < 10
    assert wait_dead([result.events[0]["grandchild"]])


async def test_cancelling_the_awaiting_task_kills_the_child(tmp_path: Path) -> None:
    info = make_connector(tmp_path, "orphan", GRANDCHILD.format(prelude=""))
    pids: list[dict] = []
    got_pids = asyncio.Event()

    def on_event(event: dict) -> None:
        pids.append(event)
        got_pids.set()

    task = asyncio.create_task(run(info, tmp_path / "out", on_event=on_event, kill_grace=1))
    await asyncio.wait_for(got_pids.wait(), 15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_dead([pids[0]["me"], pids[0]["grandchild"]])


async def test_missing_requirements_fail_fast(tmp_path: Path) -> None:
    info = make_connector(tmp_path, "needy", """
        open("STARTED", "w").close()
    """, requirements="""
        # comment
        duckdb>=1.0
        definitely-not-installed-pkg-xyz>=1.0
        pyarrow>=999 ; python_version >= "3"
        never-on-this-os==1.0 ; sys_platform == "win32"
    """)
    result = await run(info, tmp_path / "out")
    assert result.status == "failed" and result.error_code == "missing_requirements"
    assert "definitely-not-installed-pkg-xyz>=1.0 (not installed)" in result.error
    assert "pyarrow>=999" in result.error and "(installed " in result.error
    assert "duckdb>=1.0" not in result.error and "never-on-this-os" not in result.error
    assert "pip install 'definitely-not-installed-pkg-xyz>=1.0' 'pyarrow>=999'" in result.error
    assert "Dockerfile" in result.error
    assert not (info.path / "STARTED").exists()


async def test_satisfied_requirements_run(tmp_path: Path) -> None:
    info = make_connector(tmp_path, "fine", "print('ok')\n", requirements="duckdb==1.5.5\npyarrow>=10\n")
    assert (await run(info, tmp_path / "out")).status == "succeeded"


async def test_environment_is_minimal_and_secrets_stay_out_of_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", "server-jwt-secret-must-not-leak")
    monkeypatch.setenv("AGNES_ENCRYPTION_KEY", "server-encryption-key-must-not-leak")
    monkeypatch.setenv("SOME_RANDOM_SERVER_VAR", "x")
    info = make_connector(tmp_path, "envdump", """
        import json, os, sys, time
        from agnes.extract import emit, read_context
        ctx = read_context()
        emit("ctx", output_dir=str(ctx.output_dir), config=ctx.config, tables=ctx.tables,
             source_name=ctx.source_name, state_dir=str(ctx.state_dir), cwd=os.getcwd(), argv=sys.argv,
             token_len=len(ctx.secret("KEBOOLA_STORAGE_TOKEN")))
        (ctx.output_dir / "env.json").write_text(json.dumps(dict(os.environ)))
        emit("pid", pid=os.getpid())
        time.sleep(1.0)
        print("leaking " + os.environ["KEBOOLA_STORAGE_TOKEN"], file=sys.stderr)
    """)
    cmdlines: list[bytes] = []

    def on_event(event: dict) -> None:
        if event["event"] == "pid":
            cmdlines.append(Path(f"/proc/{event['pid']}/cmdline").read_bytes())

    state = tmp_path / "state"
    result = await run(info, tmp_path / "out", config={"files_dir": "/x", "n": 1},
                       secrets={"KEBOOLA_STORAGE_TOKEN": SECRET}, tables=["orders"], source_name="crm",
                       state_dir=state, on_event=on_event)
    assert result.status == "succeeded", result.error
    ctx = result.events[0]
    assert ctx["output_dir"] == str((tmp_path / "out").resolve()) and ctx["config"] == {"files_dir": "/x", "n": 1}
    assert ctx["tables"] == ["orders"] and ctx["source_name"] == "crm" and ctx["state_dir"] == str(state.resolve())
    assert ctx["cwd"] == str(info.path) and ctx["token_len"] == len(SECRET)
    assert SECRET not in json.dumps(ctx["argv"])
    assert cmdlines and SECRET.encode() not in cmdlines[0] and b"extractor.py" in cmdlines[0]
    env = json.loads((tmp_path / "out" / "env.json").read_text())
    assert env["KEBOOLA_STORAGE_TOKEN"] == SECRET
    for leaked in ("JWT_SECRET_KEY", "AGNES_ENCRYPTION_KEY", "SOME_RANDOM_SERVER_VAR"):
        assert leaked not in env
    allowed = {"PATH", "HOME", "LANG", "TZ", "PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
               "KEBOOLA_STORAGE_TOKEN", "AGNES_OUTPUT_DIR", "AGNES_CONFIG_JSON", "AGNES_TABLES",
               "AGNES_SOURCE_NAME", "AGNES_STATE_DIR", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
               "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
               "no_proxy", "LC_CTYPE"}  # LC_CTYPE: Python's own C-locale coercion may set it
    assert set(env) <= allowed, set(env) - allowed
    assert any("leaking ***" in line for line in result.stderr_tail)
    assert not any(SECRET in line for line in result.stderr_tail)


@pytest.mark.parametrize("name", ["AGNES_OUTPUT_DIR", "PATH", "PYTHONPATH", "LD_PRELOAD", "lower_case", "A-B"])
def test_secret_names_that_would_hijack_the_child_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        connector_env(out_dir=tmp_path, config={}, secrets={name: "x"}, tables=None, source_name="s",
                      state_dir=tmp_path)


def test_find_and_list_connectors(tmp_path: Path) -> None:
    custom = tmp_path / "custom"
    make_connector(custom, "snowflake", "print(1)\n")
    make_connector(custom, "sample", "print('shadow')\n")  # a built-in name: ignored
    make_connector(custom, "Bad-Name", "print(1)\n")
    (custom / "no_extractor").mkdir()
    infos = {i.name: i for i in list_connectors(BUILTIN, custom)}
    assert {"sample", "csv", "snowflake"} <= set(infos) and "Bad-Name" not in infos and "no_extractor" not in infos
    assert infos["sample"].origin == "builtin" and infos["sample"].path == BUILTIN / "sample"
    assert infos["snowflake"].origin == "custom"
    assert find_connector("csv", builtin_dir=BUILTIN, custom_dir=custom).extractor == BUILTIN / "csv/extractor.py"
    assert find_connector("snowflake", builtin_dir=BUILTIN, custom_dir=custom).origin == "custom"
    with pytest.raises(ConnectorNotFound, match=r"no connector named 'jira'.*available: .*csv \(builtin\)"):
        find_connector("jira", builtin_dir=BUILTIN, custom_dir=custom)
    assert list_connectors(tmp_path / "missing", None) == []


def _data_hashes(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "data").rglob("*.parquet"))}


async def test_sample_connector_is_valid_and_deterministic(tmp_path: Path) -> None:
    info = find_connector("sample", builtin_dir=BUILTIN, custom_dir=None)
    first = await run(info, tmp_path / "a")
    second = await run(info, tmp_path / "b")
    assert first.status == second.status == "succeeded", first.error
    assert {t: e["rows"] for t, e in first.tables_done.items()} == {"customers": 2000, "products": 200, "orders": 10000}
    assert _data_hashes(tmp_path / "a") == _data_hashes(tmp_path / "b")
    content = "SELECT md5(string_agg(t::VARCHAR, '|' ORDER BY order_id)) FROM '{}/data/orders.parquet' t"
    digest_a = duckdb.sql(content.format(tmp_path / "a")).fetchone()
    assert digest_a == duckdb.sql(content.format(tmp_path / "b")).fetchone()
    report = validate_extract(tmp_path / "a", source_name="sample")
    assert report.ok, report.violations
    for parent, key in (("customers", "customer_id"), ("products", "product_id")):
        orphans = duckdb.sql(
            f"SELECT count(*), count({key}) FROM '{tmp_path}/a/data/orders.parquet' o "
            f"ANTI JOIN '{tmp_path}/a/data/{parent}.parquet' p USING ({key})"
        ).fetchone()
        assert orphans == (0, 0), (parent, orphans)
    null_keys = duckdb.sql(f"SELECT count(*) FROM '{tmp_path}/a/data/orders.parquet' "
                           "WHERE customer_id IS NULL OR product_id IS NULL").fetchone()
    assert null_keys == (0,)  # an ANTI JOIN keeps NULL keys: none may hide there


async def test_sample_connector_honours_agnes_tables(tmp_path: Path) -> None:
    info = find_connector("sample", builtin_dir=BUILTIN, custom_dir=None)
    result = await run(info, tmp_path / "a", tables=["products", "nope"])
    assert set(result.tables_done) == {"products"} and set(result.tables_failed) == {"nope"}
    assert sorted(p.name for p in (tmp_path / "a/data").iterdir()) == ["products.parquet"]
    assert (tmp_path / "a/extract.duckdb").is_file()  # noqa: ASYNC240 - a test assertion


async def test_the_launcher_runs_a_connector_as_python_extractor_py_would(tmp_path: Path) -> None:
    """Started through agnes/extract/launch.py (for PR_SET_PDEATHSIG), a connector still sees what a
    direct `python extractor.py` gives it, loads no Agnes or DuckDB module it did not import, and
    its own `agnes.py` cannot break the launch."""
    info = make_connector(tmp_path, "plain", """
        import json, os, sys
        from pathlib import Path
        import helper  # a module beside extractor.py
        print("SEEN", json.dumps({"file": __file__, "name": __name__, "path0": sys.path[0], "argv": sys.argv,
                          "helper": helper.VALUE, "cwd": os.getcwd(),
                          "heavy": sorted(m for m in ("duckdb", "pyarrow", "agnes.extract") if m in sys.modules)}),
              file=sys.stderr)
        sys.exit(3)
    """)
    (info.path / "helper.py").write_text("VALUE = 42\n")
    (info.path / "agnes.py").write_text("raise SystemExit('the connector shadowed agnes')\n")
    result = await run(info, tmp_path / "out")
    line = next(ln for ln in result.stderr_tail if ln.startswith("SEEN "))
    seen = json.loads(line.removeprefix("SEEN "))
    folder = str(info.path.resolve())
    assert seen == {"file": f"{folder}/extractor.py", "name": "__main__", "path0": folder, "argv": [f"{folder}/extractor.py"],
                    "helper": 42, "cwd": folder, "heavy": []}, seen
    assert result.status == "failed" and result.returncode == 3, result
