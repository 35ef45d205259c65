"""A thin HTTP client for the Agnes API; errors come back as `ClientError` with the server's hint."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from agnes.version import __version__


class ClientError(Exception):
    def __init__(self, code: str, message: str, hint: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.hint, self.status = code, message, hint, status

def _error(resp: httpx.Response) -> ClientError:
    try:
        body = resp.json()["error"]
        return ClientError(body["code"], body["message"], body.get("hint", ""), resp.status_code)
    except (ValueError, KeyError, TypeError):
        return ClientError("http_error", f"HTTP {resp.status_code} from {resp.request.url}",
                           "Is the URL an Agnes server? Check it with `agnes login --url URL`.", resp.status_code)

class AgnesApi:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"User-Agent": f"agnes-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError("unreachable", f"Cannot reach {self.url}: {exc}",
                              "Check the URL and that the server runs (GET /api/health); log in again with "
                              "`agnes login --url URL` if it moved.") from None
        if resp.status_code >= 400:
            raise _error(resp)
        return resp

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.call(method, path, **kwargs).json()

    # --- the calls the commands use -------------------------------------------------

    def login(self, email: str, password: str) -> dict[str, Any]:
        return self.json("POST", "/auth/token", json={"email": email, "password": password})

    def create_api_token(self) -> dict[str, Any]:
        return self.json("POST", "/api/tokens", json={"name": f"agnes-cli@{socket.gethostname()}"[:100]})

    def list_api_tokens(self) -> list[dict[str, Any]]:
        return self.json("GET", "/api/tokens")["items"]  # type: ignore[no-any-return]

    def revoke_api_token(self, token_id: int) -> None:
        self.call("DELETE", f"/api/tokens/{int(token_id)}")

    def me(self) -> dict[str, Any]:
        return self.json("GET", "/api/me")

    def catalog(self, source: str | None = None, q: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("source", source), ("q", q)) if v}
        return self.json("GET", "/api/catalog/tables", params=params)

    def manifest(self) -> dict[str, Any]:
        return self.json("GET", "/api/data/manifest")

    def query(self, sql: str, *, accept: str = "application/json", limit: int | None = None) -> httpx.Response:
        body: dict[str, Any] = {"sql": sql, **({"limit": limit} if limit is not None else {})}
        return self.call("POST", "/api/query", json=body, headers={"Accept": accept})

    @contextmanager
    def download(self, table_id: str, etag: str | None = None) -> Iterator[httpx.Response]:
        """The streaming response (status 200) or a 304 when `etag` is current."""
        headers = {"If-None-Match": f'"{etag}"'} if etag else {}
        try:
            with self.http.stream("GET", f"/api/data/{table_id}/download", headers=headers) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error(resp)
                yield resp
        except httpx.HTTPError as exc:
            raise ClientError("download_failed", f"Download of {table_id} failed: {exc}",
                              "Run `agnes pull` again; the previous copy was kept.") from None
