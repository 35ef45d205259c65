"""A small local Google Cloud Storage JSON API server (media upload and download only).

Why: the Keboola connector downloads GCS slices with the OAuth access token
Keboola hands out, as a bearer on the JSON API. This server checks that
bearer, so tests prove the token is sent - without any network traffic.
Objects are real files under `root/<bucket>/<object>`.
"""

from __future__ import annotations

import secrets
import shutil
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from agnes.devtools.local_http import LocalHttpServer


class GcsServer(LocalHttpServer):
    """`GcsServer(root, token).start()` -> `.url`; `.stop()` when done."""

    thread_name = "gcs-server"

    def __init__(self, root: Path, token: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token or secrets.token_urlsafe(24)
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, authorization) for tests
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _send(self, code: int, body: bytes = b"", kind: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _object(self) -> tuple[Path | None, dict[str, list[str]]]:
                parsed = urlparse(self.path)
                query = parse_qs(parsed.query)
                parts = parsed.path.split("/")
                auth = self.headers.get("Authorization")
                server.requests.append((self.command, parsed.path, auth))
                if auth != f"Bearer {server.token}":
                    self._send(401, b'{"error": {"code": 401, "message": "Invalid Credentials"}}')
                    return None, query
                if parsed.path.startswith("/upload/storage/v1/b/") and len(parts) >= 7:
                    bucket, name = unquote(parts[5]), query.get("name", [""])[0]
                elif parsed.path.startswith("/storage/v1/b/") and len(parts) >= 7 and parts[5] == "o":
                    bucket, name = unquote(parts[4]), unquote("/".join(parts[6:]))
                else:
                    self._send(404, b'{"error": {"code": 404, "message": "Not Found"}}')
                    return None, query
                target = (server.root / bucket / name).resolve()
                if not name or server.root.resolve() not in target.parents:
                    self._send(400, b'{"error": {"code": 400, "message": "Invalid object name"}}')
                    return None, query
                return target, query

            def do_GET(self) -> None:  # noqa: N802
                target, query = self._object()
                if target is None:
                    return
                if query.get("alt", [""])[0] != "media":
                    self._send(400, b'{"error": {"code": 400, "message": "only alt=media is served"}}')
                    return
                if not target.is_file():
                    self._send(404, b'{"error": {"code": 404, "message": "No such object"}}')
                    return
                size = target.stat().st_size
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                with open(target, "rb") as f:
                    shutil.copyfileobj(f, self.wfile, 1 << 20)

            def do_POST(self) -> None:  # noqa: N802
                target, _ = self._object()
                if target is None:
                    return
                length = int(self.headers.get("Content-Length") or 0)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as f:
                    remaining = length
                    while remaining:
                        chunk = self.rfile.read(min(remaining, 1 << 20))
                        if not chunk:
                            break
                        f.write(chunk)
                        remaining -= len(chunk)
                self._send(200, b'{"kind": "storage#object"}')

        self._bind(host, port, Handler)

