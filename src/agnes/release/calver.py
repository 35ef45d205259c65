"""CalVer allocation: `YYYY.MM.N` with ONE counter per month across channels.

A version is claimed by pushing the channel-neutral annotated tag `vYYYY.MM.N`
to the remote. Git refuses to move an existing tag without force, so of two
claimers of the same N (whatever their channels) exactly one push succeeds;
the loser fetches and tries N+1. Only then is the channel tag
(`dev-YYYY.MM.N` / `stable-YYYY.MM.N`) added. Tags are annotated with a nonce
so two claims are always distinct objects - a lightweight tag on the same
commit would make the second push a silent no-op instead of a conflict.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agnes.version import CHANNELS

VERSION_RE = re.compile(r"^(\d{4})\.(\d{2})\.([1-9]\d*)$")


class CalVerError(Exception):
    """Allocation failed for a reason other than losing a race (no remote, no rights ...)."""


@dataclass(frozen=True)
class Allocation:
    version: str
    channel: str
    tag: str  # vYYYY.MM.N
    channel_tag: str  # <channel>-YYYY.MM.N
    commit: str
    attempts: int


def parse_version(version: str) -> tuple[int, int, int] | None:
    """'2026.04.3' -> (2026, 4, 3); anything else -> None."""
    m = VERSION_RE.match(version)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def month_of(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now.year:04d}.{now.month:02d}"


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # CI runners have no git identity; annotated tags need a tagger.
    if not subprocess.run(["git", "-C", str(repo), "config", "user.email"], capture_output=True,
                          text=True).stdout.strip():
        env.setdefault("GIT_COMMITTER_NAME", "agnes-release")
        env.setdefault("GIT_COMMITTER_EMAIL", "release@agnes.invalid")
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise CalVerError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _remote_tags(repo: Path, remote: str) -> dict[str, str]:
    """Tag name -> object id of every tag on the remote."""
    out = _git(repo, "ls-remote", "--tags", remote).stdout
    tags: dict[str, str] = {}
    for line in out.splitlines():
        oid, _, ref = line.partition("\t")
        if ref.startswith("refs/tags/") and not ref.endswith("^{}"):
            tags[ref.removeprefix("refs/tags/")] = oid
    return tags


def highest(tags: dict[str, str] | list[str], month: str) -> int:
    """Highest N claimed this month, by any tag (v-, dev-, stable-, deprecated-)."""
    pattern = re.compile(rf"^(?:v|dev-|stable-|deprecated-){re.escape(month)}\.([1-9]\d*)$")
    return max((int(m[1]) for t in tags if (m := pattern.match(t))), default=0)


def _claim(repo: Path, remote: str, tag: str, commit: str, message: str) -> bool:
    """Create annotated `tag` on `commit` and push it; True = ours, False = someone else has it."""
    _git(repo, "tag", "-a", "-f", tag, commit, "-m", f"{message}\nclaim {uuid.uuid4().hex}")
    local = _git(repo, "rev-parse", f"refs/tags/{tag}").stdout.strip()
    for _ in range(3):  # a push can also fail on a transient ref lock held by a concurrent push
        if _git(repo, "push", "--quiet", remote, f"refs/tags/{tag}:refs/tags/{tag}", check=False).returncode == 0:
            return True
        theirs = _remote_tags(repo, remote).get(tag)
        if theirs is not None:
            _git(repo, "tag", "-d", tag, check=False)
            return theirs == local
    raise CalVerError(f"cannot push tag {tag} to {remote!r} (and nobody else holds it): check the remote and "
                      "push rights")


def next_version(repo: Path, channel: str, *, remote: str = "origin", commit: str = "HEAD",
                 month: str | None = None, max_attempts: int = 100) -> Allocation:
    """Claim the next free `YYYY.MM.N` on `remote` for `commit` and tag it for `channel`."""
    if channel not in CHANNELS:
        raise CalVerError(f"unknown channel {channel!r}; use one of {', '.join(CHANNELS)}")
    month = month or month_of()
    if not re.fullmatch(r"\d{4}\.\d{2}", month):
        raise CalVerError(f"month {month!r} is not YYYY.MM")
    sha = _git(repo, "rev-parse", f"{commit}^{{commit}}").stdout.strip()
    n = highest(_remote_tags(repo, remote), month) + 1
    for attempt in range(1, max_attempts + 1):
        version = f"{month}.{n}"
        if _claim(repo, remote, f"v{version}", sha, f"Agnes {version} ({channel})"):
            channel_tag = f"{channel}-{version}"
            if not _claim(repo, remote, channel_tag, sha, f"Agnes {version} on channel {channel}"):
                raise CalVerError(f"{channel_tag} already exists on {remote!r} although v{version} was ours")
            return Allocation(version, channel, f"v{version}", channel_tag, sha, attempt)
        n = max(n + 1, highest(_remote_tags(repo, remote), month) + 1)
    raise CalVerError(f"no free version after {max_attempts} attempts")
