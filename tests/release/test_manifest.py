"""Release manifest: format, CLI updates, and health warnings fetched from a local HTTP server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from agnes.app import create_app
from agnes.release.manifest import Manifest, ManifestError, add_version, decode, deprecate, encode, notices
from agnes.settings import Settings
from tests.helpers import AGNES

DEPRECATED = "Running deprecated version 2026.04.3. Update to stable."


def sample_manifest() -> Manifest:
    m = Manifest()
    for v, ch in (("2026.04.3", "stable"), ("2026.04.4", "dev"), ("2026.04.5", "stable")):
        add_version(m, v, ch, today=date(2026, 4, 8))
    deprecate(m, "2026.04.3", "Breaking _meta change; see the CHANGELOG.", today=date(2026, 4, 9))
    return m


def test_manifest_rules():
    m = sample_manifest()
    assert m.latest == {"stable": "2026.04.5", "dev": "2026.04.4"}
    old = next(v for v in m.versions if v.version == "2026.04.3")
    assert (old.status, old.deprecated_at, old.removal_date) == ("deprecated", "2026-04-09", "2026-05-09")
    assert decode(encode(m)) == m
    assert decode(b'{"schema_version": 1, "future": true, "versions": []}').versions == []  # unknown keys ok
    for bad in (b"[]", b"{", b'{"schema_version": 2}', b'{"versions": [{"version": "2026.04.1", "channel": "dev"}]}'):
        with pytest.raises(ManifestError):
            decode(bad)
    with pytest.raises(ManifestError, match="already"):
        add_version(m, "2026.04.5", "stable")
    with pytest.raises(ManifestError, match="not in the manifest"):
        deprecate(m, "2026.01.1", "x")


def test_notices():
    m = sample_manifest()
    warn = notices(m, "2026.04.3", "stable")
    assert warn[0].startswith(DEPRECATED) and "Breaking _meta change" in warn[0] and "2026-05-09" in warn[0]
    assert warn[1].startswith("Update available: stable 2026.04.5 (running 2026.04.3 on stable)")
    assert notices(m, "2026.04.5", "stable") == []
    assert notices(m, "2026.04.4", "dev") == [notices(m, "2026.04.4", "dev")[0]]  # newer stable exists
    assert notices(m, "2026.12.0", "dev") == []  # newer than anything published: quiet


def test_manifest_cli(tmp_path: Path):
    f = tmp_path / "releases.json"
    run = lambda *a: subprocess.run([*AGNES, "release", "manifest", "--file", str(f), *a],  # noqa: E731
                                    capture_output=True, text=True)
    assert run("--add", "2026.04.1", "--channel", "stable").returncode == 0
    assert run("--add", "2026.04.2", "--channel", "stable").returncode == 0
    assert run("--deprecate", "2026.04.2", "--message", "Failed its smoke test.").returncode == 0
    data = json.loads(f.read_text())
    assert data["latest"] == {"stable": "2026.04.1"}
    assert [v["status"] for v in data["versions"]] == ["deprecated", "current"]
    bad = run("--add", "26.4")
    assert bad.returncode == 2 and "hint:" in bad.stderr


class Served:
    """A manifest on a local HTTP server (127.0.0.1); `delay` makes it slow, `body` can be replaced."""

    def __init__(self, body: bytes) -> None:
        self.body, self.delay, self.hits = body, 0.0, 0
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                served.hits += 1
                time.sleep(served.delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(served.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/releases.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def served() -> Iterator[Served]:
    s = Served(encode(sample_manifest()))
    yield s
    s.stop()


async def health_warnings(client: AsyncTestClient, want: str | None, within: float = 10) -> list[str]:
    deadline = time.monotonic() + within
    while True:
        warnings = (await client.get("/api/health")).json()["warnings"]
        if want is None or any(w.startswith(want) for w in warnings) or time.monotonic() > deadline:
            return warnings
        await asyncio.sleep(0.05)


async def test_health_warns_a_deprecated_instance_and_keeps_the_warning_offline(
        served: Served, data_dir: Path):
    settings = Settings.load({"DATA_DIR": str(data_dir), "AGNES_RELEASE_MANIFEST_URL": served.url,
                              "AGNES_VERSION": "2026.04.3", "AGNES_CHANNEL": "stable"})
    async with AsyncTestClient(create_app(settings)) as client:
        warnings = await health_warnings(client, DEPRECATED)
        assert warnings[0].startswith(DEPRECATED) and warnings[1].startswith("Update available: stable 2026.04.5")
    assert (data_dir / "state" / "release-manifest.json").exists()
    served.stop()  # offline now: the cached copy still warns after a restart
    async with AsyncTestClient(create_app(settings)) as client:
        assert (await health_warnings(client, DEPRECATED))[0].startswith(DEPRECATED)


async def test_a_slow_manifest_server_never_blocks_start_up(served: Served, data_dir: Path):
    served.delay = 3.0
    settings = Settings.load({"DATA_DIR": str(data_dir), "AGNES_RELEASE_MANIFEST_URL": served.url,
                              "AGNES_VERSION": "2026.04.3"})
    began = time.monotonic()
    async with AsyncTestClient(create_app(settings)) as client:
        assert (await client.get("/api/health")).status_code == 200
        assert time.monotonic() - began < 2.5  # answered while the fetch still waits
        assert (await health_warnings(client, DEPRECATED, within=10))[0].startswith(DEPRECATED)


async def test_garbage_keeps_the_last_good_copy_and_empty_url_means_off(served: Served, data_dir: Path):
    from agnes.services import releases

    settings = Settings.load({"DATA_DIR": str(data_dir), "AGNES_RELEASE_MANIFEST_URL": served.url,
                              "AGNES_VERSION": "2026.04.3"})
    async with AsyncTestClient(create_app(settings)) as client:
        await health_warnings(client, DEPRECATED)
        instance = client.app.state.instance
        served.body = b"<html>captive portal</html>"
        assert await releases.refresh(instance, served.url) is False
        assert (await health_warnings(client, None))[0].startswith(DEPRECATED)
        served.body = b" " * (releases.MAX_BYTES + 1) + b"{}"  # refused while reading, kept copy still applies
        assert await releases.refresh(instance, served.url) is False
        assert (await health_warnings(client, None))[0].startswith(DEPRECATED)
        served.body, served.delay = encode(sample_manifest()), 5.0  # the whole fetch is bounded
        started = time.monotonic()
        assert await releases.refresh(instance, served.url, timeout=0.5) is False
        assert time.monotonic() - started < 4, "a slow server must not hold the refresh"
        served.delay = 0.0
    hits = served.hits
    off = Settings.load({"DATA_DIR": str(data_dir), "AGNES_RELEASE_MANIFEST_URL": "", "AGNES_VERSION": "2026.04.3"})
    assert off.release.manifest_url is None
    async with AsyncTestClient(create_app(off)) as client:
        await asyncio.sleep(0.3)
        assert not any(w.startswith(DEPRECATED) for w in (await client.get("/api/health")).json()["warnings"])
    assert served.hits == hits


def test_the_documented_example_is_a_valid_manifest():
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "releases.md").read_text()
    example = decode(re.search(r"```json\n(.*?)```", doc, re.S)[1])
    assert example.latest == {"stable": "2026.04.5", "dev": "2026.04.4"}
    warn = notices(example, "2026.04.3", "stable")
    assert warn[0].startswith(DEPRECATED) and "Update available: stable 2026.04.5" in warn[1]
    assert "moves on a server only when\nsomething pulls it" in doc or "only when something pulls it" in doc
