"""CHANGELOG.md rules: every code change says what changed; every BREAKING entry says how to migrate.

Layout (Keep a Changelog, CalVer headings):

    ## [Unreleased]
    ### Changed
    - **BREAKING:** `_meta` gains `owner`.
      Migration: re-run every custom connector's contract check; ...
    ## [2026.04.3] - 2026-04-08

An entry is a `- ` (or `* `, `+ `) bullet with its indented continuation
lines. An entry is BREAKING when it starts with the marker `**BREAKING:**`,
`**BREAKING**` or `BREAKING:` (so "non-breaking" prose never counts); it must
carry its own `Migration:` text so the release notes show it next to the
change. A commit whose message has a `BREAKING:` line needs such an entry too.
`--release` moves the Unreleased entries under a new heading.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agnes.release.calver import parse_version

UNRELEASED = "## [Unreleased]"
WATCHED = ("src/", "connectors/")
_HEADING = re.compile(r"^## \[")
# The marker opens the entry: `**BREAKING:**`, `**BREAKING**` (optionally followed by ':'), `BREAKING:`.
_BREAKING = re.compile(r"^(?:\*\*BREAKING(?::\*\*|\*\*)|BREAKING:)")
_BULLET = re.compile(r"^[-*+] ")
# A commit message line that declares a breaking change (`BREAKING CHANGE:` is the Conventional Commits form).
_BREAKING_COMMIT = re.compile(r"^BREAKING(?: CHANGE)?:", re.M)
_MIGRATION = re.compile(r"\bmigration\b\s*(guide)?\s*:", re.I)


class ChangelogError(Exception):
    """A rule of the changelog is broken; the message says which and how to fix it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


class ChangelogGitError(ChangelogError):
    """git could not answer (unknown --base, shallow clone): an environment problem, not a broken rule."""


@dataclass(frozen=True)
class Section:
    start: int  # index of the heading line
    end: int  # index after the last line of the section
    lines: list[str]


def unreleased(text: str) -> Section:
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == UNRELEASED)
    except StopIteration:
        raise ChangelogError("CHANGELOG.md has no '## [Unreleased]' section",
                             "Add '## [Unreleased]' above the first version heading.") from None
    end = next((i for i in range(start + 1, len(lines)) if _HEADING.match(lines[i])), len(lines))
    return Section(start, end, lines[start + 1:end])


def entries(section_lines: list[str]) -> list[str]:
    """Each bullet with its continuation lines, normalised to one string."""
    found: list[str] = []
    for line in section_lines:
        if _BULLET.match(line):
            found.append(line[2:].strip())
        elif found and line.startswith((" ", "\t")) and line.strip():
            found[-1] += " " + line.strip()
        elif not line.strip() or line.startswith("#"):
            continue
    return found


def is_breaking(entry: str) -> bool:
    return bool(_BREAKING.match(entry))


def breaking_without_migration(text: str) -> list[str]:
    return [e for e in entries(unreleased(text).lines) if is_breaking(e) and not _MIGRATION.search(e)]


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ChangelogGitError(f"git {' '.join(args)} failed: {proc.stderr.strip()}",
                             "Fetch the base branch first (e.g. `git fetch origin main`, or "
                             "actions/checkout with fetch-depth: 0) and pass it as --base.")
    return proc.stdout


def check(repo: Path, base: str, path: str = "CHANGELOG.md") -> list[str]:
    """Problems of the change from `base` (merge base) to HEAD; empty = fine."""
    changed = _git(repo, "diff", "--name-only", f"{base}...HEAD").splitlines()
    merge_base = _git(repo, "merge-base", base, "HEAD").strip()
    head_text = (repo / path).read_text(encoding="utf-8")
    problems = [f"BREAKING entry without a migration guide: {e[:100]!r}"
                for e in breaking_without_migration(head_text)]
    try:
        before = set(entries(unreleased(_git(repo, "show", f"{merge_base}:{path}")).lines))
    except ChangelogError:
        before = set()  # no CHANGELOG.md (or no Unreleased section) at the base yet
    added = [e for e in entries(unreleased(head_text).lines) if e not in before]
    touched = sorted(p for p in changed if p.startswith(WATCHED))
    if touched and not added:
        shown = ", ".join(touched[:3]) + (f" and {len(touched) - 3} more" if len(touched) > 3 else "")
        problems.append(f"{shown} changed but CHANGELOG.md has no new entry under '## [Unreleased]'")
    # A commit that says `BREAKING:` must reach the release notes as a BREAKING entry with its migration.
    documented = any(is_breaking(e) and _MIGRATION.search(e) for e in added)
    for record in _git(repo, "log", "--format=%H%x00%B%x1e", f"{merge_base}..HEAD").split("\x1e"):
        sha, _, message = record.strip().partition("\0")
        if sha and _BREAKING_COMMIT.search(message) and not documented:
            subject = message.strip().splitlines()[0]
            problems.append(f"commit {sha[:7]} ({subject[:80]!r}) is marked BREAKING but CHANGELOG.md has no new "
                            "'**BREAKING:**' entry with 'Migration:' under '## [Unreleased]'")
            break
    return problems


def released_is_breaking(text: str, version: str) -> bool:
    """Whether the released section of `version` has a BREAKING entry (the release deprecates its predecessor)."""
    return any(is_breaking(e) for e in entries(section_of(text, version).splitlines()))


def release(text: str, version: str, date: str | None = None) -> str:
    """Move the Unreleased entries under `## [version] - date`, leaving an empty Unreleased."""
    if parse_version(version) is None:
        raise ChangelogError(f"{version!r} is not a CalVer version", "Pass YYYY.MM.N, e.g. 2026.04.3.")
    if re.search(rf"^## \[{re.escape(version)}\]", text, re.M):
        raise ChangelogError(f"CHANGELOG.md already has a section for {version}",
                             "Allocate a new version with `agnes release next-version`.")
    if bad := breaking_without_migration(text):
        raise ChangelogError(f"BREAKING entry without a migration guide: {bad[0][:100]!r}",
                             "Add 'Migration: <what users must do>' to that entry.")
    section = unreleased(text)
    lines = text.splitlines()
    body = section.lines
    while body and not body[0].strip():
        body = body[1:]
    while body and not body[-1].strip():
        body = body[:-1]
    if not entries(body):
        body = ["No user-visible changes."]
    date = date or datetime.now(UTC).date().isoformat()
    new = [*lines[:section.start], UNRELEASED, "", f"## [{version}] - {date}", "", *body, "", *lines[section.end:]]
    return "\n".join(new).rstrip("\n") + "\n"


def section_of(text: str, version: str) -> str:
    """The body of `## [version]` (release notes)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"## [{version}]")), None)
    if start is None:
        raise ChangelogError(f"CHANGELOG.md has no section for {version}",
                             f"Run `agnes release changelog --release {version}` first.")
    end = next((i for i in range(start + 1, len(lines)) if _HEADING.match(lines[i])), len(lines))
    return "\n".join(lines[start + 1:end]).strip() + "\n"
