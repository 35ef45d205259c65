"""Release notices: fetch the release manifest in the background and keep health warnings current.

Never blocks start-up and never fails the instance: offline, a slow server or a
bad document only keep the last good copy (cached in state/, so a restart
without network still warns). The URL is `release.manifest_url`; unset = off.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import httpx

from agnes.release.manifest import Manifest, ManifestError, decode, encode, notices
from agnes.services.instance import Instance

log = logging.getLogger("agnes.releases")
FETCH_TIMEOUT_SECONDS = 5.0
MAX_BYTES = 1024 * 1024
CACHE_NAME = "release-manifest.json"


def cache_path(instance: Instance) -> Path:
    return instance.settings.state_dir / CACHE_NAME


def _apply(instance: Instance, manifest: Manifest) -> None:
    instance.release_warnings = notices(manifest, instance.build.version, instance.build.channel)


def load_cached(instance: Instance) -> bool:
    """Use the cached manifest (if any) until a fresh one arrives."""
    try:
        _apply(instance, decode(cache_path(instance).read_bytes()))
    except FileNotFoundError:
        return False
    except (OSError, ManifestError) as exc:
        log.warning("ignoring the cached release manifest %s: %s", cache_path(instance), exc)
        return False
    return True


async def refresh(instance: Instance, url: str, *, timeout: float = FETCH_TIMEOUT_SECONDS) -> bool:  # noqa: ASYNC109
    """Fetch once; True when a valid manifest was applied and cached."""
    try:
        async with asyncio.timeout(timeout * 2):  # the whole fetch, not each read: a trickling server stops too
            manifest = decode(await _fetch(instance, url, timeout))
    except (httpx.HTTPError, ManifestError, TimeoutError) as exc:
        log.info("release manifest not refreshed from %s (%s); keeping the last copy", url, exc)
        return False
    _apply(instance, manifest)
    await asyncio.to_thread(_write_cache, cache_path(instance), encode(manifest))
    return True


async def _fetch(instance: Instance, url: str, timeout: float) -> bytes:  # noqa: ASYNC109
    """The body, read in chunks and refused past MAX_BYTES (never held whole when too large)."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as http, http.stream(
            "GET", url, headers={"Accept": "application/json",
                                 "User-Agent": f"agnes/{instance.build.version}"}) as resp:
        if resp.status_code != 200:
            raise ManifestError(f"HTTP {resp.status_code}")
        body = bytearray()
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) > MAX_BYTES:
                raise ManifestError(f"larger than {MAX_BYTES} bytes")
        return bytes(body)


def _write_cache(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only volume still serves; health reports the data dir itself
        log.warning("cannot cache the release manifest in %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


async def release_notice_loop(instance: Instance) -> None:
    """Run by the app lifespan as a task; cancelled at shutdown."""
    url = instance.settings.release.manifest_url
    if not url:
        return
    await asyncio.to_thread(load_cached, instance)
    while True:
        try:
            await refresh(instance, url)
        except Exception:  # a notice must never take the server down; retry next period
            log.exception("release manifest refresh failed")
        await asyncio.sleep(instance.settings.release.check_interval_seconds)
