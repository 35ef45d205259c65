"""`agnes dev ...`: local stand-ins for outside services, for demos and manual testing."""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    dev = typer.Typer(help="Local stand-ins for outside services (demos, manual tests).", no_args_is_help=True)
    app.add_typer(dev, name="dev")

    @dev.command("keboola-server", help=(
        "Serve a Keboola Storage API (the subset Agnes uses) backed by real files.\n\n"
        "Storage: exports are served by this server itself, or put into S3 with --s3-endpoint (e.g. a moto "
        "server). Azure Blob and GCS exports exist only for tests (agnes.devtools.keboola_server AzureBackend, "
        "GcsBackend), not in this command."))
    def keboola_server(
        data: Annotated[Path, typer.Option("--data", help="Data folder (tables/<id>/meta.json + data.csv); "
                                           "a small demo project is written into an empty one.")],
        port: Annotated[int, typer.Option("--port", help="TCP port (0 = any free one).")] = 8765,
        host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
        token: Annotated[str | None, typer.Option("--token", help="Storage API token to accept "
                                                  "(default: a new random one, printed).")] = None,
        unsliced: Annotated[bool, typer.Option("--unsliced", help="Export one CSV with a header instead of "
                                               "header-less slices + manifest.")] = False,
        slice_rows: Annotated[int, typer.Option("--slice-rows", help="Rows per slice.")] = 250_000,
        s3_endpoint: Annotated[str | None, typer.Option("--s3-endpoint", help="Put exports into S3 at this "
                                                        "endpoint (e.g. a moto server).")] = None,
        s3_bucket: Annotated[str, typer.Option("--s3-bucket")] = "kbc-exports",
    ) -> None:
        """Serve a Keboola Storage API (the subset Agnes uses) backed by real files."""
        from agnes.devtools.keboola_server import KeboolaServer, demo_data
        from agnes.devtools.keboola_storage import S3Backend

        demo_data(data)
        token = token or secrets.token_urlsafe(24)
        backend = S3Backend(s3_endpoint, s3_bucket) if s3_endpoint else None
        server = KeboolaServer(data, tokens=[token], host=host, port=port, sliced=not unsliced,
                               slice_rows=slice_rows, backend=backend)
        typer.echo(f"Keboola Storage API test server on {server.url}/v2/storage (provider "
                   f"{server.backend.provider}); tables: {', '.join(server.data.table_ids())}")
        # `export` lines, so they can be pasted into the shell that talks to Agnes (QUICKSTART.md)
        typer.echo(f"export KEBOOLA_STACK_URL={shlex.quote(server.url)}")
        typer.echo(f"export KEBOOLA_STORAGE_TOKEN={shlex.quote(token)}")
        if s3_endpoint:
            typer.echo(f"export AGNES_KEBOOLA_S3_ENDPOINT_URL={shlex.quote(s3_endpoint)}  # for the Agnes server")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            typer.echo("stopped")
