"""Shared fixtures: a real instance on a temporary data directory.

Everything is real: SQLite files, secrets on disk, the full Litestar app with
its lifespan. Nothing in here weakens production code paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from agnes.app import create_app
from agnes.settings import Settings

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def make_settings(data_dir: Path) -> Callable[..., Settings]:
    def make(**env: str) -> Settings:
        return Settings.load({"DATA_DIR": str(data_dir), **env})

    return make


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> Litestar:
    return create_app(make_settings())


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as c:
        yield c


def setup_token_of(data_dir: Path) -> str:
    return (data_dir / "state" / "setup-token").read_text().strip()


async def bootstrap(client: AsyncTestClient[Any], data_dir: Path) -> str:
    resp = await client.post(
        "/auth/bootstrap",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "setup_token": setup_token_of(data_dir)},
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["access_token"]


@pytest.fixture
async def admin_token(client: AsyncTestClient[Litestar], data_dir: Path) -> str:
    return await bootstrap(client, data_dir)


@pytest.fixture
def auth() -> Callable[[str], dict[str, str]]:
    return lambda token: {"Authorization": f"Bearer {token}"}


async def create_user(client: AsyncTestClient[Any], admin: str, email: str, role: str,
                      password: str = "another-long-passphrase") -> dict[str, Any]:
    resp = await client.post("/api/users", json={"email": email, "password": password, "role": role},
                             headers={"Authorization": f"Bearer {admin}"})
    assert resp.status_code == 201, resp.text
    return resp.json()


async def login(client: AsyncTestClient[Any], email: str, password: str) -> str:
    resp = await client.post("/auth/token", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


@pytest.fixture
async def served(client: AsyncTestClient[Litestar], admin_token: str) -> set[str]:
    """A bootstrapped instance serving `sample` (visible to nobody but admins) and csv source `hr`."""
    from tests.serving_helpers import HR_FILES, load_sources

    return await load_sources(client, admin_token, csv={"hr": HR_FILES})
