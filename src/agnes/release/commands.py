"""`agnes release …` and `agnes smoke`: the commands the CI/CD workflows run.

Exit codes: 0 done, 1 the check failed (smoke step, changelog rule), 2 usage
or environment problem (no git remote, bad version). Errors print what was
wrong and a hint on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

release_app = typer.Typer(help="Release tooling run by CI: CalVer, changelog, release manifest.",
                          no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(message: str, hint: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error[/] {escape(message)}")
    err.print(f"[yellow]hint:[/] {escape(hint)}")
    return typer.Exit(code)


@release_app.command("next-version")
def next_version(
    channel: Annotated[str, typer.Option("--channel", help="dev (feature branches) or stable (main).")],
    repo: Annotated[Path, typer.Option("--repo", help="Git work tree to tag from.")] = Path("."),
    remote: Annotated[str, typer.Option("--remote", help="Remote that holds the tags.")] = "origin",
    commit: Annotated[str, typer.Option("--commit", help="Commit to tag.")] = "HEAD",
    month: Annotated[str | None, typer.Option("--month", help="YYYY.MM (default: this month, UTC).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole allocation as JSON.")] = False,
) -> None:
    """Claim the next YYYY.MM.N (one counter per month across channels) and push its tags."""
    from agnes.release.calver import CalVerError
    from agnes.release.calver import next_version as allocate

    try:
        got = allocate(repo, channel, remote=remote, commit=commit, month=month)
    except CalVerError as exc:
        raise _fail(str(exc), "Run inside a clone with push rights to the remote (CI: actions/checkout with "
                    "fetch-depth: 0 and contents: write), or pass --repo/--remote.") from None
    out.print(json.dumps(got.__dict__) if as_json else got.version)


@release_app.command("changelog")
def changelog(
    check: Annotated[bool, typer.Option("--check", help="Fail when src/ or connectors/ changed without an "
                                        "Unreleased entry, or a BREAKING entry lacks a migration guide.")] = False,
    base: Annotated[str, typer.Option("--base", help="Base ref to compare with (--check).")] = "origin/main",
    release: Annotated[str | None, typer.Option("--release", help="Move Unreleased under this version.")] = None,
    date: Annotated[str | None, typer.Option("--date", help="Release date YYYY-MM-DD (default today, UTC).")] = None,
    notes: Annotated[Path | None, typer.Option("--notes", help="With --release: write the release notes "
                                               "(docs/RELEASE_TEMPLATE.md filled in) to this file.")] = None,
    repo: Annotated[Path, typer.Option("--repo", help="Repository root.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="With --release: print {version, breaking, notes} as "
                                          "JSON; `breaking` says whether the released section has a BREAKING "
                                          "entry (the release workflow then deprecates the previous stable).")
                       ] = False,
) -> None:
    """Check or release CHANGELOG.md (Keep a Changelog, CalVer headings)."""
    from agnes.release import changelog as cl

    if check == bool(release):
        raise _fail("give exactly one of --check or --release VERSION", "e.g. `agnes release changelog --check "
                    "--base origin/main`")
    path = repo / "CHANGELOG.md"
    try:
        if check:
            problems = cl.check(repo, base)
            for problem in problems:
                err.print(f"[bold red]changelog:[/] {escape(problem)}")
            if problems:
                err.print("[yellow]hint:[/] add a bullet under '## [Unreleased]' (### Added/Changed/Fixed/Removed) "
                          "saying what changed for users; mark breaking ones '**BREAKING:**' and add "
                          "'Migration: <what users must do>' to the same bullet.")
                raise typer.Exit(1)
            out.print("changelog ok")
            return
        assert release is not None
        text = cl.release(path.read_text(encoding="utf-8"), release, date)
        path.write_text(text, encoding="utf-8")
        if notes is not None:
            template = (repo / "docs" / "RELEASE_TEMPLATE.md").read_text(encoding="utf-8")
            notes.write_text(template.replace("{{version}}", release).replace(
                "{{changes}}", cl.section_of(text, release).rstrip("\n")), encoding="utf-8")
        if as_json:  # plain write: rich would read '[...]' in paths as markup
            sys.stdout.write(json.dumps({"version": release, "breaking": cl.released_is_breaking(text, release),
                                         "notes": str(notes) if notes else None}) + "\n")
        else:
            out.print(f"CHANGELOG.md: Unreleased moved under {release}")
    except cl.ChangelogGitError as exc:  # e.g. an unknown --base: the environment, not the change
        raise _fail(exc.message, exc.hint, 2) from None
    except cl.ChangelogError as exc:
        raise _fail(exc.message, exc.hint, 1 if check else 2) from None
    except FileNotFoundError as exc:
        raise _fail(f"{exc.filename} does not exist", "Run from the repository root or pass --repo.") from None


@release_app.command("manifest")
def manifest(
    file: Annotated[Path, typer.Option("--file", help="Manifest to update (created when missing).")],
    add: Annotated[str | None, typer.Option("--add", help="Record this new version as current.")] = None,
    channel: Annotated[str, typer.Option("--channel", help="Channel of --add.")] = "stable",
    deprecate: Annotated[str | None, typer.Option("--deprecate", help="Mark this version deprecated.")] = None,
    message: Annotated[str, typer.Option("--message", help="Why it is deprecated / what to do.")] = "",
) -> None:
    """Update the release manifest the instances read (format: docs/releases.md)."""
    from agnes.release import manifest as mf

    try:
        current = mf.decode(file.read_bytes()) if file.exists() else mf.Manifest()
        if add:
            mf.add_version(current, add, channel)
        if deprecate:
            mf.deprecate(current, deprecate, message)
    except mf.ManifestError as exc:
        raise _fail(str(exc), "Check the version (YYYY.MM.N) and that the manifest file is the published one.") \
            from None
    file.write_bytes(mf.encode(current))
    out.print(f"{file}: latest {current.latest}")


def smoke(
    url: Annotated[str, typer.Argument(help="Base URL, e.g. https://canary.example.com or http://host:8000.")],
    email: Annotated[str | None, typer.Option("--email", help="Admin email.")] = None,
    password: Annotated[str | None, typer.Option("--password", help="Admin password (or AGNES_SMOKE_PASSWORD).")
                        ] = None,
    token: Annotated[str | None, typer.Option("--token", help="Admin bearer token (or AGNES_SMOKE_TOKEN).")] = None,
    sync_timeout: Annotated[float, typer.Option("--sync-timeout", help="Longest wait for the sync job, s.")] = 300,
    report: Annotated[Path | None, typer.Option("--report", help="Also write the JSON report here.")] = None,
) -> None:
    """Post-deploy smoke test; JSON report on stdout, the failing step on stderr; exit 1 on failure."""
    from agnes.release.smoke import Smoke

    password = password or os.environ.get("AGNES_SMOKE_PASSWORD") or None
    token = token or os.environ.get("AGNES_SMOKE_TOKEN") or None
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    try:
        result = Smoke(url, email=email, password=password, token=token, sync_timeout=sync_timeout).run()
    except ValueError as exc:
        raise _fail(str(exc), "Pass --token TOKEN (an admin API token), or --email and --password of an admin.") \
            from None
    import msgspec

    data = msgspec.json.format(msgspec.json.encode(result), indent=2).decode()
    if report is not None:
        report.write_text(data + "\n", encoding="utf-8")
    sys.stdout.write(data + "\n")
    err.print(escape(result.summary()))
    raise typer.Exit(0 if result.ok else 1)


def register(app: typer.Typer) -> None:
    app.add_typer(release_app, name="release")
    app.command("smoke")(smoke)
