"""Exports downloaded from each cloud provider with Keboola's federation credentials.

Real local implementations: moto in server mode (S3), azurite (Azure Blob,
SAS connection string) and a GCS JSON API server that checks the bearer.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from contract_tests import validate_extract

from agnes.devtools.gcs_server import GcsServer
from agnes.devtools.keboola_server import KeboolaData
from agnes.devtools.keboola_storage import AzureBackend, GcsBackend, S3Backend
from tests.connectors.keboola.support import azurite, keboola_server, moto_s3, orders_table, run_keboola

SLICING = [pytest.param(True, id="sliced"), pytest.param(False, id="unsliced")]


@pytest.fixture
def data(tmp_path: Path) -> KeboolaData:
    d = KeboolaData(tmp_path / "kbc")
    orders_table(d)
    return d


def check(out: Path) -> None:
    assert validate_extract(out, source_name="kbc").ok
    table = pq.read_table(out / "data" / "in_c_crm_orders.parquet").sort_by("id")
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert str(table.schema.field("amount").type) == "decimal128(12, 2)"


@pytest.mark.parametrize("sliced", SLICING)
async def test_s3_with_the_returned_aws_credentials(data: KeboolaData, tmp_path: Path, sliced: bool) -> None:
    import boto3

    with moto_s3(tmp_path) as moto:
        backend = S3Backend(moto.endpoint, "kbc-exports", access_key=moto.access_key)
        config = {"storage_endpoints": {"s3": moto.endpoint}}
        with keboola_server(data.root, backend=backend, sliced=sliced, slice_rows=1) as server:
            result = await run_keboola(server.url, tmp_path / "out", config=config)
            info = server.file_json(max(server._files), federation=True)
            assert result.status == "succeeded" and result.tables_done, (result.error, result.tables_failed)
            creds = info["credentials"]
            assert info["provider"] == "aws" and creds["SessionToken"] and creds["AccessKeyId"] != moto.access_key[0]
            check(tmp_path / "out")

            # moto enforces IAM: keys it never issued are refused (so the success above used the returned ones)
            stranger = boto3.client("s3", region_name="us-east-1", endpoint_url=moto.endpoint,
                                    aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="nope")
            with pytest.raises(Exception, match="InvalidAccessKeyId|AccessDenied|SignatureDoesNotMatch"):
                stranger.list_objects_v2(Bucket="kbc-exports")

            good = backend.file_fields

            def expired(key: str, sliced: bool) -> dict:  # Keboola hands out credentials S3 no longer accepts
                fields = good(key, sliced)
                return {**fields, "credentials": {**fields["credentials"], "SessionToken": "expired-session"}}

            backend.file_fields = expired
            failed = await run_keboola(server.url, tmp_path / "out2", config=config)
    assert failed.status == "failed" and not failed.tables_done
    error = failed.tables_failed["in_c_crm_orders"]["error"]
    assert "download of s3://kbc-exports/" in error and "from aws failed" in error, error
    assert "(InvalidToken)" in error and "token is malformed or otherwise invalid" in error, error


@pytest.mark.parametrize("sliced", SLICING)
async def test_azure_blob_with_the_sas_connection_string(data: KeboolaData, tmp_path: Path, sliced: bool) -> None:
    with azurite(tmp_path / "azurite") as endpoint:
        backend = AzureBackend(endpoint, "kbc-exports")
        with keboola_server(data.root, backend=backend, sliced=sliced, slice_rows=1) as server:
            result = await run_keboola(server.url, tmp_path / "out")
            info = server.file_json(max(server._files), federation=True)
    assert result.status == "succeeded" and result.tables_done, (result.error, result.tables_failed)
    assert "SharedAccessSignature=" in info["absCredentials"]["SASConnectionString"]
    assert "AccountKey" not in info["absCredentials"]["SASConnectionString"]  # only the SAS leaves the server
    check(tmp_path / "out")


@pytest.mark.parametrize("sliced", SLICING)
async def test_gcs_with_the_oauth_token_as_bearer(data: KeboolaData, tmp_path: Path, sliced: bool) -> None:
    gcs = GcsServer(tmp_path / "gcs").start()
    try:
        backend = GcsBackend(gcs.url, "kbc-exports", gcs.token)
        with keboola_server(data.root, backend=backend, sliced=sliced, slice_rows=1) as server:
            result = await run_keboola(server.url, tmp_path / "out", config={"storage_endpoints": {"gcs": gcs.url}})
            downloads = [r for r in gcs.requests if r[0] == "GET"]
            assert result.status == "succeeded" and result.tables_done, (result.error, result.tables_failed)
            assert downloads and all(auth == f"Bearer {gcs.token}" for _, _, auth in downloads)
            check(tmp_path / "out")

            good = backend.file_fields

            def expired(key: str, sliced: bool) -> dict:  # Keboola hands out a token GCS no longer accepts
                fields = good(key, sliced)
                return {**fields, "gcsCredentials": {**fields["gcsCredentials"], "access_token": "expired"}}

            backend.file_fields = expired
            failed = await run_keboola(server.url, tmp_path / "out2", config={"storage_endpoints": {"gcs": gcs.url}})
    finally:
        gcs.stop()
    error = failed.tables_failed["in_c_crm_orders"]["error"]
    assert "download of http" in error and "401" in error and "Invalid Credentials" in error
