"""Real processes for tests: the `agnes` CLI and a live server on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

AGNES = [sys.executable, "-m", "agnes"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agnes_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without Agnes settings, and without anything that would make a test
    reach another address (a developer's real Keboola token, their Redis): tests pass those explicitly."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AGNES_", "JWT_", "SESSION_", "KEBOOLA_", "REDIS_URL"))}
    env.update({"DATA_DIR": str(data_dir), **extra})
    return env


def run_agnes(args: list[str], data_dir: Path, *, input: str | None = None, timeout: float = 60,
              **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGNES, *args], env=agnes_env(data_dir, **env), input=input, capture_output=True,
                          text=True, timeout=timeout)


class LiveServer:
    """`agnes serve` in a subprocess on 127.0.0.1; stopped by the test."""

    def __init__(self, data_dir: Path, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"server-{self.port}.log"
        self._log_file = self.log.open("w")
        self.proc = subprocess.Popen(
            [*AGNES, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=agnes_env(data_dir, **env), stdout=self._log_file, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
