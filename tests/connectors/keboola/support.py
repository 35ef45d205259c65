"""Local stand-ins for Keboola and its cloud storage: the test server, moto (S3), azurite, fake GCS.

Every server binds 127.0.0.1 on a free port and is stopped by the fixture that started it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agnes.devtools.keboola_server import KeboolaData, KeboolaServer
from agnes.extract.runner import RunResult, find_connector, run_connector
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "kbc-test-token-0123456789"
TOOLS = ROOT / ".tools"
AZURITE = TOOLS / "node_modules" / ".bin" / "azurite-blob"


def orders_table(data: KeboolaData, **kw: Any) -> None:
    data.put_table("in.c-crm.orders", ["id", "amount", "paid", "ordered_on", "created_at", "created_tz", "note"],
                   [[1, "12.50", "true", "2024-01-02", "2024-01-02 10:00:00", "2024-01-02 10:00:00+02:00", "first"],
                    [2, "7.25", "false", "2024-01-03", "2024-01-03 11:30:00", "", "second"],
                    [3, "100.00", "1", "2024-02-01", "", "2024-02-01T09:15:00Z", 'quote " and, comma']],
                   types={"id": "INTEGER", "amount": ("NUMERIC", "12,2"), "paid": "BOOLEAN", "ordered_on": "DATE",
                          "created_at": "TIMESTAMP", "created_tz": ("TIMESTAMP", "TIMESTAMP_TZ"), "note": "STRING"},
                   primary_key=["id"], description="Orders from the CRM", **kw)


def customers_table(data: KeboolaData, **kw: Any) -> None:
    data.put_table("in.c-crm.customers", ["id", "name", "score"], [[10, "Acme", "0.5"], [11, "Globex", "1.25"]],
                   types={"id": "INTEGER", "name": "STRING", "score": "FLOAT"}, primary_key=["id"], **kw)


@contextmanager
def keboola_server(data_dir: Path, **kw: Any) -> Iterator[KeboolaServer]:
    server = KeboolaServer(data_dir, tokens=[TOKEN], **kw).start()
    try:
        yield server
    finally:
        server.stop()


async def run_keboola(server_url: str, out: Path, *, tables: list[str] | None = None, config: dict | None = None,
                      token: str = TOKEN, previous: Path | None = None) -> RunResult:
    info = find_connector("keboola", builtin_dir=ROOT / "connectors", custom_dir=None)
    return await run_connector(info, out, config={"keboola_url": server_url, **(config or {})},
                               secrets={"KEBOOLA_STORAGE_TOKEN": token}, timeout=120, tables=tables,
                               source_name="kbc", previous_dir=previous)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def ensure_azurite() -> Path:
    """azurite from .tools/node_modules (installed with npm on first use); skip only without node/npm."""
    if AZURITE.exists():
        return AZURITE
    if shutil.which("npm") is None or shutil.which("node") is None:
        if os.environ.get("CI"):
            pytest.fail("node/npm are missing: install nodejs and npm (.ci/run does) - azurite tests need them")
        pytest.skip("node/npm not installed: the Azure Blob tests need azurite (npm); install nodejs + npm")
    TOOLS.mkdir(exist_ok=True)
    proc = subprocess.run(["npm", "install", "--prefix", str(TOOLS), "--no-audit", "--no-fund", "azurite@3"],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not AZURITE.exists():
        pytest.fail(f"npm install azurite failed (make tools installs it):\n{proc.stderr[-2000:]}")
    return AZURITE


@contextmanager
def azurite(tmp: Path) -> Iterator[str]:
    """A real azurite blob service; yields its blob endpoint URL."""
    binary = ensure_azurite()
    port = free_port()
    proc = subprocess.Popen([str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(tmp),
                             "--skipApiVersionCheck", "--silent", "--loose"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _port_open(port):
            if proc.poll() is not None:
                raise AssertionError(f"azurite exited: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("azurite did not start within 30 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/devstoreaccount1"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(10)


@dataclass(frozen=True)
class MotoS3:
    endpoint: str
    access_key: tuple[str, str]  # an IAM user's key; every request after the bootstrap is signed and checked


BOOTSTRAP_ACTIONS = 3  # create user, its policy, its access key - unauthenticated; then moto enforces IAM


@contextmanager
def moto_s3(tmp: Path) -> Iterator[MotoS3]:
    """A moto server (own process, 127.0.0.1) that enforces IAM auth: wrong keys are refused, as on AWS."""
    import boto3

    port = free_port()
    log = open(tmp / "moto.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(BOOTSTRAP_ACTIONS)},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not _port_open(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"moto server did not start: {(tmp / 'moto.log').read_text()[-2000:]}")
            time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")  # noqa: S106 - accepted only for the bootstrap
        iam.create_user(UserName="keboola-stack")
        iam.put_user_policy(UserName="keboola-stack", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="keboola-stack")["AccessKey"]
        yield MotoS3(endpoint, (key["AccessKeyId"], key["SecretAccessKey"]))
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(10)
        log.close()
