"""Client configuration: server URL and API token, in `~/.config/agnes/client.json` (0600).

`$AGNES_CLIENT_CONFIG` points elsewhere (tests, several instances). Written
atomically (temp file + rename) with mode 0600 from the start: the token is a
credential and must never be world-readable, not even for a moment.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import msgspec

DEFAULT_DATA_DIR = "~/agnes-data"


class ClientConfig(msgspec.Struct, kw_only=True):
    url: str
    token: str
    email: str | None = None
    token_kind: str = "api"  # noqa: S105 — api (long-lived) | session (expires; viewers cannot create API tokens)
    data_dir: str = DEFAULT_DATA_DIR

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()


class NotLoggedIn(Exception):
    """No client configuration yet."""


def config_path() -> Path:
    override = os.environ.get("AGNES_CLIENT_CONFIG")
    if override:
        return Path(override).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "agnes" / "client.json"


def load() -> ClientConfig:
    path = config_path()
    try:
        return msgspec.json.decode(path.read_bytes(), type=ClientConfig)
    except FileNotFoundError:
        raise NotLoggedIn(f"no client configuration at {path}") from None
    except msgspec.DecodeError as exc:
        raise NotLoggedIn(f"{path} is not a valid client configuration ({exc})") from None


def save(config: ClientConfig) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".client-", suffix=".json")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(config)))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
