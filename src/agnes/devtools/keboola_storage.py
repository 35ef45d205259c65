"""Where the Keboola test server puts its exports: the storage providers a real stack uses.

`local` files are served by the test server itself (a signed URL, like a
presigned one); `aws`, `azure` and `gcp` write into a real local
implementation (moto, azurite, agnes.devtools.gcs_server) and hand out the
per-provider credentials Keboola's `GET /files/{id}?federationToken=1` returns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="  # noqa: S105 - azurite's public well-known dev key


def utc_iso(value: datetime | None = None) -> str:
    """Keboola's timestamp format: 2024-05-01T10:00:00+0000."""
    return (value or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class Backend:
    provider = "local"

    def put(self, key: str, path: Path) -> None:
        raise NotImplementedError

    def ref(self, key: str) -> str:
        """A manifest entry URL for `key`."""
        raise NotImplementedError

    def file_fields(self, key: str, sliced: bool) -> dict[str, Any]:
        raise NotImplementedError


class LocalBackend(Backend):
    """Files served by the Keboola server itself under /_files/<key>?sig=... (like a presigned URL)."""

    provider = "local"

    def __init__(self, root: Path, base_url: str, signing_key: bytes) -> None:
        self.root, self.base_url, self.signing_key = root, base_url, signing_key

    def sign(self, key: str) -> str:
        return hmac.new(self.signing_key, key.encode(), hashlib.sha256).hexdigest()

    def put(self, key: str, path: Path) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target)

    def ref(self, key: str) -> str:
        return f"{self.base_url}/_files/{quote(key)}?sig={self.sign(key)}"

    def file_fields(self, key: str, sliced: bool) -> dict[str, Any]:
        return {"url": self.ref(key + ("manifest" if sliced else ""))}


class S3Backend(Backend):
    """Exports in an S3 bucket; like Keboola, each file hands out short-lived credentials that can only read.

    `access_key` is the stack's own (e.g. an IAM key created in a moto server that enforces auth); the
    federation credentials come from STS AssumeRole on a role allowed only s3:GetObject on the bucket.
    """

    provider = "aws"

    def __init__(self, endpoint_url: str, bucket: str, region: str = "us-east-1", *,
                 access_key: tuple[str, str] = ("testing", "testing")) -> None:
        import boto3

        self.bucket, self.region, self.endpoint_url = bucket, region, endpoint_url
        keys = {"region_name": region, "endpoint_url": endpoint_url, "aws_access_key_id": access_key[0],
                "aws_secret_access_key": access_key[1]}
        self.s3 = boto3.client("s3", **keys)
        self.iam = boto3.client("iam", **keys)
        self.sts = boto3.client("sts", **keys)
        try:
            self.s3.create_bucket(Bucket=bucket)
        except self.s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        self.role_arn = self._reader_role()

    def _reader_role(self) -> str:
        name = f"keboola-export-reader-{self.bucket}"
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        try:
            arn = self.iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        except self.iam.exceptions.EntityAlreadyExistsException:
            arn = self.iam.get_role(RoleName=name)["Role"]["Arn"]
        read = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{self.bucket}/*"}]}
        self.iam.put_role_policy(RoleName=name, PolicyName="read-exports", PolicyDocument=json.dumps(read))
        return arn

    def federation_credentials(self) -> dict[str, str]:
        """Fresh read-only session credentials (AccessKeyId, SecretAccessKey, SessionToken, Expiration)."""
        c = self.sts.assume_role(RoleArn=self.role_arn, RoleSessionName="agnes-export",
                                 DurationSeconds=3600)["Credentials"]
        return {"AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"],
                "SessionToken": c["SessionToken"], "Expiration": c["Expiration"].isoformat()}

    def put(self, key: str, path: Path) -> None:
        self.s3.upload_file(str(path), self.bucket, key)
        path.unlink()

    def ref(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def file_fields(self, key: str, sliced: bool) -> dict[str, Any]:
        url = self.s3.generate_presigned_url("get_object", Params={
            "Bucket": self.bucket, "Key": key + ("manifest" if sliced else "")}, ExpiresIn=3600)
        return {"url": url, "region": self.region, "s3Path": {"bucket": self.bucket, "key": key},
                "credentials": self.federation_credentials()}


class AzureBackend(Backend):
    provider = "azure"

    def __init__(self, blob_endpoint: str, container: str, account: str = AZURITE_ACCOUNT,
                 account_key: str = AZURITE_KEY) -> None:
        from azure.storage.blob import BlobServiceClient

        self.endpoint, self.container, self.account, self.key = blob_endpoint.rstrip("/"), container, account, \
            account_key
        conn = (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={account_key};"
                f"BlobEndpoint={self.endpoint};")
        self.service = BlobServiceClient.from_connection_string(conn)
        try:
            self.service.create_container(container)
        except Exception as e:  # ResourceExistsError
            if "ContainerAlreadyExists" not in str(e):
                raise

    def put(self, key: str, path: Path) -> None:
        with open(path, "rb") as f:
            self.service.get_blob_client(self.container, key).upload_blob(f, overwrite=True)
        path.unlink()

    def ref(self, key: str) -> str:
        return f"azure://{self.account}.blob.core.windows.net/{self.container}/{key}"

    def file_fields(self, key: str, sliced: bool) -> dict[str, Any]:

        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        sas = generate_container_sas(self.account, self.container, account_key=self.key,
                                     permission=ContainerSasPermissions(read=True, list=True),
                                     expiry=datetime.now(UTC) + timedelta(hours=1))
        return {"url": f"{self.endpoint}/{self.container}/{key}{'manifest' if sliced else ''}?{sas}",
                "absPath": {"container": self.container, "name": key, "account": self.account},
                "absCredentials": {"SASConnectionString": f"BlobEndpoint={self.endpoint};SharedAccessSignature={sas}",
                                   "expiration": utc_iso()}}


class GcsBackend(Backend):
    provider = "gcp"

    def __init__(self, gcs_url: str, bucket: str, token: str) -> None:
        self.url, self.bucket, self.token = gcs_url.rstrip("/"), bucket, token

    def put(self, key: str, path: Path) -> None:
        import httpx

        with open(path, "rb") as f:
            resp = httpx.post(f"{self.url}/upload/storage/v1/b/{self.bucket}/o",
                              params={"uploadType": "media", "name": key}, content=f.read(),
                              headers={"Authorization": f"Bearer {self.token}"}, timeout=60)
        resp.raise_for_status()
        path.unlink()

    def ref(self, key: str) -> str:
        return f"gs://{self.bucket}/{key}"

    def file_fields(self, key: str, sliced: bool) -> dict[str, Any]:
        return {"url": f"{self.url}/storage/v1/b/{self.bucket}/o/{quote(key, safe='')}?alt=media",
                "gcsPath": {"bucket": self.bucket, "key": key},
                "gcsCredentials": {"access_token": self.token, "token_type": "Bearer", "expires_in": 3600,
                                   "projectId": "agnes-test"}}
