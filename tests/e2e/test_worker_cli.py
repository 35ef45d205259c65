"""`agnes worker`: refuses to start without REDIS_URL; `--check` reports worker liveness."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import free_port, run_agnes
from tests.integration.jobs_support import redis_url  # noqa: F401 - fixture


def test_worker_needs_redis_url(data_dir: Path) -> None:
    result = run_agnes(["worker"], data_dir)
    assert result.returncode == 2
    assert "REDIS_URL is not set" in result.stderr and "hint" in result.stderr


@pytest.mark.redis
def test_check_fails_without_a_live_worker(data_dir: Path, redis_url: str) -> None:  # noqa: F811
    result = run_agnes(["worker", "--check"], data_dir, REDIS_URL=redis_url)
    assert result.returncode == 1 and "no live worker" in result.stderr
    down = run_agnes(["worker", "--check"], data_dir, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 1 and "cannot reach Redis" in down.stderr
