"""Download a Keboola export file from the stack's cloud storage, as Keboola's own clients do.

`GET /files/{id}?federationToken=1` returns the provider and short-lived
credentials: AWS keys for S3 (boto3), a SAS connection string for Azure Blob
(azure-storage-blob), an OAuth access token for GCS (JSON API, bearer). A
sliced file has a manifest `{entries: [{url}]}` listing header-less slices in
order; an unsliced one is a CSV with a header. Slices download in parallel.

Endpoint overrides (tests and local demos only): `endpoints` = {"s3": url,
"gcs": url}, from the connector option `storage_endpoints` (set by the server
from AGNES_KEBOOLA_S3_ENDPOINT_URL / AGNES_KEBOOLA_GCS_ENDPOINT_URL) - never
guessed, honoured only when set. Azure needs none: the SAS connection string
names its endpoint.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import httpx

from agnes.extract.keboola.api import KeboolaError

GCS_API = "https://storage.googleapis.com"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Downloaded:
    files: list[Path]  # in order; each gzip (".csv.gz") or plain (".csv")
    header: bool  # True: unsliced, the first line is the header


def _gz_name(path: Path) -> Path:
    with open(path, "rb") as f:
        magic = f.read(2)
    final = path.with_name(path.name + (".csv.gz" if magic == b"\x1f\x8b" else ".csv"))
    path.rename(final)
    return final


class _Store:
    """Fetch one object of this file's provider into `dest`."""

    def __init__(self, info: dict[str, Any], endpoints: dict[str, str], http: httpx.Client) -> None:
        self.info, self.endpoints, self.http = info, endpoints, http
        self.provider = str(info.get("provider") or "")
        self._s3: Any = None
        self._azure: Any = None

    # -- per provider ---------------------------------------------------------------
    def s3(self) -> Any:
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            creds = self.info.get("credentials") or {}
            self._s3 = boto3.client(
                "s3", region_name=self.info.get("region") or "us-east-1",
                aws_access_key_id=creds.get("AccessKeyId"), aws_secret_access_key=creds.get("SecretAccessKey"),
                aws_session_token=creds.get("SessionToken"), endpoint_url=self.endpoints.get("s3") or None,
                # gzip's own CRC already guards every slice; botocore's pure-Python CRC32 would cost more
                # than the download itself
                config=Config(retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=16,
                              response_checksum_validation="when_required"))
        return self._s3

    def azure(self) -> Any:
        if self._azure is None:
            from azure.storage.blob import BlobServiceClient

            conn = (self.info.get("absCredentials") or {}).get("SASConnectionString")
            if not conn:
                raise KeboolaError("bad_response", "Azure export file without absCredentials.SASConnectionString")
            self._azure = BlobServiceClient.from_connection_string(conn)
        return self._azure

    def gcs_get(self, bucket: str, key: str, dest: Path) -> None:
        creds = self.info.get("gcsCredentials") or {}
        token = creds.get("access_token")
        if not token:
            raise KeboolaError("bad_response", "GCS export file without gcsCredentials.access_token")
        base = (self.endpoints.get("gcs") or GCS_API).rstrip("/")
        url = f"{base}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(key, safe='')}"
        self._http_get(url, dest, params={"alt": "media"},
                       headers={"Authorization": f"{creds.get('token_type') or 'Bearer'} {token}"})

    def _http_get(self, url: str, dest: Path, *, params: dict[str, str] | None = None,
                  headers: dict[str, str] | None = None) -> None:
        with self.http.stream("GET", url, params=params, headers=headers) as resp:
            if resp.status_code >= 400:
                body = resp.read().decode("utf-8", "replace")[:200]
                raise KeboolaError("http", f"download of {_redacted(url)} failed: {resp.status_code} {body}")
            with open(dest, "wb") as f:
                for chunk in resp.iter_bytes(CHUNK):
                    f.write(chunk)

    # -- by reference -----------------------------------------------------------------
    def get(self, ref: str, dest: Path) -> None:
        """`ref`: s3://bucket/key, azure://account.host/container/name, gs://bucket/key or http(s)://..."""
        parsed = urlparse(ref)
        try:
            if parsed.scheme == "s3":  # one streamed GET per slice (slices already download in parallel)
                body = self.s3().get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"]
                with open(dest, "wb") as f:
                    shutil.copyfileobj(body, f, CHUNK)
            elif parsed.scheme == "azure":
                container, _, name = parsed.path.lstrip("/").partition("/")
                blob = self.azure().get_blob_client(container, name)
                with open(dest, "wb") as f:
                    blob.download_blob(max_concurrency=4).readinto(f)
            elif parsed.scheme == "gs":
                self.gcs_get(parsed.netloc, parsed.path.lstrip("/"), dest)
            elif parsed.scheme in ("http", "https"):
                self._http_get(ref, dest)
            else:
                raise KeboolaError("bad_response", f"unknown slice URL scheme in {ref[:80]!r}")
        except KeboolaError:
            raise
        except httpx.HTTPError as e:
            raise KeboolaError("network", f"download of {_redacted(ref)} failed: {type(e).__name__}: {e}") from None
        except Exception as e:  # boto3 / azure errors: keep the provider's message, name the object
            raise KeboolaError("network", f"download of {_redacted(ref)} from {self.provider or 'storage'} failed: "
                               f"{type(e).__name__}: {e}") from None

    def whole_file_ref(self, suffix: str = "") -> str:
        """The file (or, with suffix 'manifest', its manifest) as a reference for `get`."""
        info = self.info
        if self.provider == "aws" and info.get("s3Path"):
            return f"s3://{info['s3Path']['bucket']}/{info['s3Path']['key']}{suffix}"
        if self.provider == "azure" and info.get("absPath"):
            p = info["absPath"]
            return f"azure://{p.get('account', 'account')}.blob.core.windows.net/{p['container']}/{p['name']}{suffix}"
        if self.provider == "gcp" and info.get("gcsPath"):
            return f"gs://{info['gcsPath']['bucket']}/{info['gcsPath']['key']}{suffix}"
        if info.get("url"):
            return str(info["url"])
        raise KeboolaError("bad_response", f"export file {info.get('id')}: no url and no {self.provider} path")


def _redacted(ref: str) -> str:
    """A URL without its query string (presigned URLs carry signatures)."""
    return ref.split("?", 1)[0]


def download(info: dict[str, Any], dest: Path, *, endpoints: dict[str, str] | None = None, workers: int = 8,
             on_progress: Callable[[int], None] | None = None) -> Downloaded:
    """Download the export file `info` into `dest` (created); returns the local CSV files in order."""
    dest.mkdir(parents=True, exist_ok=True)
    with httpx.Client(timeout=httpx.Timeout(60.0, read=300.0), follow_redirects=True) as http:
        store = _Store(info, endpoints or {}, http)
        if not info.get("isSliced"):
            part = dest / "whole"
            store.get(store.whole_file_ref(), part)
            return Downloaded([_gz_name(part)], header=True)
        manifest_path = dest / "manifest.json"
        # with the federation credentials like the slices (the presigned `url` only when there is no provider path)
        store.get(store.whole_file_ref("manifest"), manifest_path)
        try:
            entries = [str(e["url"]) for e in json.loads(manifest_path.read_text())["entries"]]
        except (ValueError, KeyError, TypeError) as e:
            raise KeboolaError("bad_response", f"export file {info.get('id')}: the slice manifest is not "
                               f"{{entries: [{{url}}]}}: {e}") from None
        parts = [dest / f"part-{i:05d}" for i in range(len(entries))]

        def one(i: int) -> Path:
            store.get(entries[i], parts[i])
            if on_progress:
                on_progress(i)
            return _gz_name(parts[i])

        if not entries:
            return Downloaded([], header=False)
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(entries)))) as pool:
            files = list(pool.map(one, range(len(entries))))
        return Downloaded(files, header=False)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
