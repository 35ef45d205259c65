"""Analyst commands of `agnes`: login, catalog, pull, query (client side, HTTP only).

`register(app)` adds them to the main typer app (cli.py); heavy imports stay
inside the commands so `agnes --help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agnes.client import config as client_config
from agnes.client.api import AgnesApi, ClientError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
FORMATS = ("table", "json", "csv")


def _fail(code: str, message: str, hint: str, exit_code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error[/] {escape(f'[{code}]')} {escape(message)}")
    if hint:
        err.print(f"[yellow]hint:[/] {escape(hint)}")
    return typer.Exit(exit_code)


def _config() -> client_config.ClientConfig:
    try:
        return client_config.load()
    except client_config.NotLoggedIn as exc:
        raise _fail("not_logged_in", str(exc), "Run `agnes login --url https://agnes.example.com --email "
                    "you@example.com` first.", 2) from None


def _api(cfg: client_config.ClientConfig) -> AgnesApi:
    return AgnesApi(cfg.url, cfg.token)


def login(
    url: Annotated[str, typer.Option(help="The Agnes server, e.g. https://agnes.example.com.")],
    email: Annotated[str | None, typer.Option(help="Your account (the password is prompted for).")] = None,
    token: Annotated[str | None, typer.Option(help="Use this API token instead of email and password.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    data_dir: Annotated[str, typer.Option("--dir", help="Folder for pulled data.")] = client_config.DEFAULT_DATA_DIR,
) -> None:
    """Log in to a server and keep a long-lived API token (in ~/.config/agnes/client.json, 0600).

    Logging in again to the same server revokes the API token the previous login created, once
    the new one works (best effort; the outcome is printed), so tokens do not pile up."""
    if not token and not email:
        raise _fail("usage", "Give --email (password prompt) or --token.", "e.g. agnes login --url URL --email EMAIL",
                    2)
    try:
        kind = "api"
        if not token:
            password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("Password",
                                                                                             hide_input=True)
            session = AgnesApi(url).login(email or "", password)["access_token"]
            try:
                token = AgnesApi(url, session).create_api_token()["token"]
            except ClientError as exc:
                if exc.code != "forbidden":
                    raise
                token, kind = session, "session"  # viewers cannot create API tokens
        me = AgnesApi(url, token).me()
    except ClientError as exc:
        raise _fail(exc.code, exc.message, exc.hint) from None
    previous = _previous_login(url)
    path = client_config.save(client_config.ClientConfig(url=url.rstrip("/"), token=token, email=me["email"],
                                                         token_kind=kind, data_dir=data_dir))
    out.print(f"Logged in to {escape(url)} as {escape(me['email'])} ({me['role']}); settings in {path}.")
    if previous is not None and previous.token != token:
        _revoke_previous(url, previous.token)
    if kind == "session":
        err.print("[yellow]note:[/] viewers cannot create API tokens, so this login expires (about an hour); "
                  "ask an admin for the analyst role to stay logged in and to pull data.")


def _previous_login(url: str) -> client_config.ClientConfig | None:
    """The stored login to the same server, if it holds a long-lived API token a login created."""
    try:
        cfg = client_config.load()
    except client_config.NotLoggedIn:
        return None
    same = cfg.url.rstrip("/") == url.rstrip("/") and cfg.token_kind == "api"  # noqa: S105 - a kind, not a secret
    return cfg if same else None


def _revoke_previous(url: str, old_token: str) -> None:
    """Revoke the replaced API token with its own credentials (best effort, reported either way)."""
    api = AgnesApi(url, old_token)
    try:
        found = [t for t in api.list_api_tokens() if old_token.startswith(t["prefix"])]
        if len(found) != 1:
            err.print("[yellow]note:[/] the previous API token was not found among your tokens; nothing revoked.")
            return
        api.revoke_api_token(found[0]["id"])
    except ClientError as exc:
        if exc.status == 401:  # expired, revoked or deleted already: nothing left to do
            err.print("[yellow]note:[/] the previous API token no longer works; nothing to revoke.")
            return
        err.print(f"[yellow]note:[/] could not revoke the previous API token ({escape(exc.code)}: "
                  f"{escape(exc.message)}); list yours with GET /api/tokens and revoke it with DELETE /api/tokens/ID.")
        return
    finally:
        api.close()
    out.print(f"Revoked the previous API token ({escape(found[0]['prefix'])}…).")


def catalog(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    search: Annotated[str | None, typer.Option("--search", "-q", help="Text in the id or description.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """The tables you may read."""
    cfg = _config()
    try:
        page = _api(cfg).catalog(source, search)
    except ClientError as exc:
        raise _fail(exc.code, exc.message, exc.hint) from None
    if fmt == "json":
        out.print_json(data=page)
        return
    table = Table("id", "rows", "size", "extracted_at", "mode", "description")
    for t in page["tables"]:
        table.add_row(t["id"], _num(t["rows"]), _size(t["size_bytes"]), t["extracted_at"] or "", t["query_mode"],
                      escape((t["description"] or "")[:80]))
    out.print(table)
    out.print(f"{page['count']} table(s)")


def pull(
    tables: Annotated[list[str] | None, typer.Argument(help="Table ids (source.table); default: all you may read.")]
    = None,
    data_dir: Annotated[str | None, typer.Option("--dir", help="Data folder (default: the one set at login).")]
    = None,
) -> None:
    """Download changed tables as Parquet, drop the ones you lost access to, rebuild agnes.duckdb."""
    from agnes.client.local import DATABASE, LocalFolder
    from agnes.client.progress import RichProgress
    from agnes.client.pull import pull as do_pull

    cfg = _config()
    folder = LocalFolder(Path(data_dir).expanduser() if data_dir else cfg.data_path)
    try:
        with RichProgress(err) as progress:
            report = do_pull(_api(cfg), folder, tables or None, progress)
    except ClientError as exc:
        raise _fail(exc.code, exc.message, exc.hint) from None
    out.print(f"downloaded {len(report.downloaded)}, up to date {len(report.current)}, removed "
              f"{len(report.removed)}" + (f" ({', '.join(report.removed)})" if report.removed else "")
              + f"; query with `agnes query` or duckdb {folder.root / DATABASE}")
    kept = [t for t in report.unavailable if t not in report.failed]
    if kept:
        err.print(f"[yellow]unavailable on the server right now[/] (local copies kept): {escape(', '.join(kept))}")
    for table_id, message in report.failed.items():
        err.print(f"[bold red]failed[/] {table_id}: {escape(message)} (the previous copy, if any, was kept)")
    if report.failed:
        raise typer.Exit(1)


def query(
    sql: Annotated[str, typer.Argument(help="One SQL statement.")],
    remote: Annotated[bool, typer.Option("--remote", help="Run on the server instead of the local copy.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    data_dir: Annotated[str | None, typer.Option("--dir", help="Data folder (default: the one set at login).")]
    = None,
) -> None:
    """Run SQL on your pulled data (DuckDB), or with --remote on the server."""
    if fmt not in FORMATS:
        raise _fail("usage", f"--format {fmt!r} is not one of {', '.join(FORMATS)}.", "Use --format table|json|csv.",
                    2)
    cfg = _config()
    if remote:
        try:
            resp = _api(cfg).query(sql, accept="text/csv" if fmt == "csv" else "application/json", limit=limit)
        except ClientError as exc:
            raise _fail(exc.code, exc.message, exc.hint) from None
        if fmt == "csv":
            sys.stdout.write(resp.text)
            return
        _show(resp.json(), fmt)
        return
    from agnes.client.local_query import run_local

    root = Path(data_dir).expanduser() if data_dir else cfg.data_path
    try:
        result = run_local(root, sql, limit, csv=fmt == "csv")
    except ClientError as exc:
        raise _fail(exc.code, exc.message, exc.hint) from None
    if isinstance(result, bytes):
        sys.stdout.write(result.decode())
        return
    _show(result, fmt)


def _show(result: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        sys.stdout.write(_json(result) + "\n")
        return
    table = Table(*(c["name"] for c in result["columns"]))
    for row in result["rows"]:
        table.add_row(*("NULL" if v is None else escape(str(v)) for v in row))
    out.print(table)
    out.print(f"{result['row_count']} row(s)" + (" (truncated)" if result.get("truncated") else ""))


def _json(value: Any) -> str:
    from agnes.engine.encode import encode_json  # decimals as strings, dates ISO: the API's JSON

    return encode_json(value).decode()


def _num(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(value)


def register(app: typer.Typer) -> None:
    for command in (login, catalog, pull, query):
        app.command(rich_help_panel="Analyst (client)")(command)
