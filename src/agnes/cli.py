"""`agnes` — the server, the worker and admin/analyst commands in one entry point."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from agnes.client.commands import register as register_client_commands
from agnes.devtools.commands import register as register_dev_commands
from agnes.errors import AgnesError, StartupError
from agnes.release.commands import register as register_release_commands
from agnes.settings import Settings

T = TypeVar("T")

app = typer.Typer(help="Agnes — self-hosted data platform for AI analysts.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
users_app = typer.Typer(help="Server-side user administration (run where the data directory is).",
                        no_args_is_help=True)
secrets_app = typer.Typer(help="Instance secrets.", no_args_is_help=True)
contract_app = typer.Typer(help="The extract contract every connector must meet.", no_args_is_help=True)
sources_app = typer.Typer(help="Server-side source administration (run where the data directory is).",
                          no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(secrets_app, name="secrets")
app.add_typer(contract_app, name="contract")
app.add_typer(sources_app, name="sources")
register_client_commands(app)  # login, catalog, pull, query (analyst side, HTTP only)
register_release_commands(app)  # release next-version|changelog|manifest, smoke (CI/CD)
register_dev_commands(app)  # dev keboola-server (local stand-ins for demos and tests)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _fail(exc: AgnesError, exit_code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error[/] {escape(f'[{exc.code}]')} {escape(exc.message)}")
    err.print(f"[yellow]hint:[/] {escape(exc.hint)}")
    return typer.Exit(exit_code)


def _load_settings() -> Settings:
    try:
        return Settings.load()
    except AgnesError as exc:
        raise _fail(exc) from None


def _run(coro_factory: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]
    except AgnesError as exc:
        raise _fail(exc) from None


@app.command()
def version() -> None:
    """Print version, channel and commit of this build."""
    from agnes.settings import build_info

    try:
        info = build_info()  # the build variables only: answers even when the provisioning file is broken
    except AgnesError as exc:
        raise _fail(exc) from None
    out.print(f"agnes {info.version} (channel {info.channel}, commit {info.commit})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: settings, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings, 8000).")] = None,
) -> None:
    """Run the web server (API + web UI)."""
    import os

    import uvicorn

    from agnes.app import create_app
    from agnes.services.instance import start_instance

    if host:
        os.environ["AGNES_HOST"] = host
    if port:
        os.environ["AGNES_PORT"] = str(port)
    settings = _load_settings()
    logging.basicConfig(level=settings.server.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def preflight() -> None:  # fail fast with a readable message instead of a lifespan traceback
        instance = await start_instance(settings, serve=False)
        await instance.close()

    _run(preflight)
    from agnes.services.query import apply_serve_memory_cap

    apply_serve_memory_cap(settings)  # query.memory_cap: DuckDB misses some allocations; the kernel does not
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level,
        proxy_headers=False,
        lifespan="on",
    )


@app.command()
def worker(
    check: Annotated[bool, typer.Option("--check", help="Health check: exit 0 if a worker is alive.")] = False,
    burst: Annotated[bool, typer.Option("--burst", help="Run the queued jobs, then exit.")] = False,
) -> None:
    """Run sync jobs from Redis (arq); needs REDIS_URL. Also runs the cron schedules (UTC)."""
    settings = _load_settings()
    if not settings.jobs.redis_url:
        err.print("[bold red]error[/] REDIS_URL is not set, so there is no queue to work on.")
        err.print("[yellow]hint:[/] set REDIS_URL=redis://HOST:6379/0 for the server and the worker; "
                  "without it the server runs jobs itself and needs no worker.")
        raise typer.Exit(2)
    logging.basicConfig(level=settings.server.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from agnes.jobs.worker import check_worker, run_worker

    if check:
        try:
            code = asyncio.run(check_worker(settings))
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            err.print(f"[bold red]unhealthy[/] cannot reach Redis: {escape(str(exc))}")
            raise typer.Exit(1) from None
        (out if code == 0 else err).print("worker healthy" if code == 0 else "no live worker on this Redis")
        raise typer.Exit(code)

    async def preflight() -> None:  # fail fast with a readable message (schema too new, bad key ...)
        from agnes.services.instance import start_instance

        instance = await start_instance(settings, serve=False)
        await instance.close()

    _run(preflight)
    run_worker(settings, burst=burst)


@app.command("setup-token")
def setup_token() -> None:
    """Print the one-time setup token (only while no user exists)."""
    from agnes.services.instance import start_instance
    from agnes.services.setup import prepare_setup_token

    settings = _load_settings()

    async def read() -> str | None:
        instance = await start_instance(settings, serve=False)
        try:
            return await prepare_setup_token(instance, announce=False)
        finally:
            await instance.close()

    token = _run(read)
    if token is None:
        err.print("Setup is complete: the first admin exists, so there is no setup token any more.")
        err.print("hint: log in with POST /auth/token; a locked-out admin runs `agnes users reset-password EMAIL`.")
        raise typer.Exit(1)
    out.print(token, soft_wrap=True, highlight=False)


@users_app.command("reset-password")
def reset_password(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the new password from stdin.")] = False,
) -> None:
    """Set a new password for a user (and reactivate them): recovery for a locked-out admin."""
    from agnes.services.instance import start_instance
    from agnes.services.users import reset_password as do_reset

    settings = _load_settings()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)

    async def reset() -> str:
        instance = await start_instance(settings, serve=False)
        try:
            user = await do_reset(instance, email, password)
            return user.email
        finally:
            await instance.close()

    out.print(f"Password of {_run(reset)} changed; the account is active.")


@secrets_app.command("reset-encryption-key")
def reset_encryption_key(
    yes: Annotated[bool, typer.Option("--yes", help="Confirm that stored source credentials are lost.")] = False,
) -> None:
    """Accept a new encryption key after the old one was lost (stored credentials must be re-entered)."""
    from agnes.services.instance import forget_encryption_key

    if not yes:
        err.print("This forgets the old encryption key: every stored source credential must be entered again.")
        err.print("hint: re-run with --yes to confirm.")
        raise typer.Exit(1)
    settings = _load_settings()
    _run(lambda: forget_encryption_key(settings))
    out.print("The encryption key fingerprint was reset; start Agnes and re-enter source credentials.")


@sources_app.command("rollback")
def sources_rollback(name: Annotated[str, typer.Argument(help="The source's name.")]) -> None:
    """Serve the source's previous run again (a second rollback goes forward again)."""
    from agnes.services.instance import start_instance
    from agnes.services.rollback import rollback_source

    settings = _load_settings()

    async def rollback() -> tuple[str, str | None, int]:
        instance = await start_instance(settings, serve=False)
        try:
            pub = await rollback_source(instance, name)
            return pub.run_id, pub.previous_run_id, pub.serial
        finally:
            await instance.close()

    run_id, previous, serial = _run(rollback)
    out.print(f"Source {name} now serves run {run_id} (publication {serial}); it rolled back from {previous}. "
              "Running servers pick it up within a second.")


@contract_app.command("check")
def contract_check(
    path: Annotated[str, typer.Argument(help="Extract folder (with extract.duckdb and data/) or the .duckdb file.")],
    source: Annotated[str | None, typer.Option("--source", help="Also check this source name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Skip reading every data page (the sync never skips it).")]
    = False,
) -> None:
    """Validate an extract folder against the frozen contract (exit 0 ok, 1 violations, 2 usage)."""
    from contract_tests import main as contract_main

    args = [path, *(["--source", source] if source else []), *(["--json"] if as_json else []),
            *(["--quick"] if quick else [])]
    raise typer.Exit(contract_main(args))


def main() -> None:
    try:
        app()
    except StartupError as exc:  # pragma: no cover - defensive: commands catch their own
        raise SystemExit(_fail(exc).exit_code) from None
