"""CalVer allocation against a real bare git repository, with parallel claimers of both channels."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agnes.release.calver import CalVerError, highest, next_version
from tests.helpers import AGNES

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(cwd: Path, *args: str) -> str:
    import os

    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "init", "-b", "main", str(seed))
    (seed / "README").write_text("agnes\n")
    git(seed, "add", "README")
    git(seed, "commit", "-m", "first")
    git(seed, "remote", "add", "origin", str(bare))
    git(seed, "push", "origin", "main")
    return bare


def clone(remote: Path, where: Path, branch_commit: str | None = None) -> Path:
    git(where.parent, "clone", "-q", str(remote), str(where))
    if branch_commit:
        (where / "f").write_text(branch_commit)
        git(where, "add", "f")
        git(where, "commit", "-m", branch_commit)
    return where


def remote_tags(remote: Path) -> dict[str, str]:
    out = git(remote, "for-each-ref", "--format=%(refname:short) %(*objectname)", "refs/tags")
    return dict(line.split(" ") for line in out.splitlines())


def hold_first_push_until_all_arrive(repo: Path, barrier: Path, parties: int) -> None:
    """A real pre-push hook: each claimer's first push waits until every claimer has read the remote tags.

    So all of them start from the same N and all but one MUST lose a push and retry (not just may).
    """
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(f"""#!/bin/sh
[ -e '{barrier}/done-{repo.name}' ] && exit 0
touch '{barrier}/done-{repo.name}' '{barrier}/arrived-{repo.name}'
i=0
while [ "$(ls '{barrier}' | grep -c '^arrived-')" -lt {parties} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
exit 0
""")
    hook.chmod(0o755)


def test_parallel_claimers_of_both_channels_get_distinct_gapless_versions(remote: Path, tmp_path: Path):
    claimers = [("dev" if i % 2 else "stable", clone(remote, tmp_path / f"c{i}", f"change {i}")) for i in range(8)]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    for _, repo in claimers:
        hold_first_push_until_all_arrive(repo, barrier, len(claimers))

    def claim(job: tuple[str, Path]) -> dict[str, str]:
        channel, repo = job
        proc = subprocess.run([*AGNES, "release", "next-version", "--channel", channel, "--month", "2026.04",
                               "--repo", str(repo), "--json"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    with ThreadPoolExecutor(len(claimers)) as pool:
        got = list(pool.map(claim, claimers))

    versions = sorted(int(g["version"].rsplit(".", 1)[1]) for g in got)
    assert versions == list(range(1, 9))  # distinct, and no gaps: every lost race retried the next N
    attempts = sorted(g["attempts"] for g in got)
    assert attempts[0] == 1 and attempts[-1] > 1 and sum(attempts) >= 8 + 7, attempts  # 7 lost the first round
    tags = remote_tags(remote)
    for g, (channel, repo) in zip(got, claimers, strict=True):
        head = git(repo, "rev-parse", "HEAD").strip()
        assert g["channel"] == channel and g["commit"] == head
        assert tags[f"v{g['version']}"] == head and tags[f"{channel}-{g['version']}"] == head
        other = "stable" if channel == "dev" else "dev"
        assert f"{other}-{g['version']}" not in tags  # a version exists once, in one channel
    assert sum(t.startswith("v2026.04.") for t in tags) == 8 and len(tags) == 16


def test_counter_continues_after_existing_tags_and_resets_per_month(remote: Path, tmp_path: Path):
    repo = clone(remote, tmp_path / "c")
    for name in ("v2026.03.7", "stable-2026.04.4", "deprecated-2026.04.5"):  # any prefix counts
        git(repo, "tag", "-a", name, "-m", name)
        git(repo, "push", "-q", "origin", name)
    assert next_version(repo, "dev", month="2026.04").version == "2026.04.6"
    assert next_version(repo, "stable", month="2026.04").version == "2026.04.7"
    assert next_version(repo, "stable", month="2026.05").version == "2026.05.1"


def test_a_claim_lost_to_a_stale_clone_moves_to_the_next_number(remote: Path, tmp_path: Path):
    first, second = clone(remote, tmp_path / "a", "a"), clone(remote, tmp_path / "b", "b")
    assert next_version(first, "stable", month="2026.04").version == "2026.04.1"
    # A tag pushed before `second` reads the remote is simply skipped (no conflict needed).
    git(first, "tag", "-a", "v2026.04.2", "-m", "someone else")
    git(first, "push", "-q", "origin", "v2026.04.2")
    got = next_version(second, "dev", month="2026.04")
    assert got.version == "2026.04.3" and got.tag == "v2026.04.3" and got.channel_tag == "dev-2026.04.3"
    assert got.attempts == 1


def test_a_tag_claimed_between_reading_and_pushing_is_a_real_conflict(remote: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    """The race itself: `late` reads the remote tags, `rival` pushes the same v-tag (another commit), then
    `late` pushes. Git refuses, nothing is overwritten, and `late` retries with N+1."""
    from agnes.release import calver

    late, rival = clone(remote, tmp_path / "late", "late"), clone(remote, tmp_path / "rival", "rival")
    real = calver._remote_tags
    reads: list[dict[str, str]] = []

    def read_then_lose_the_race(repo: Path, name: str) -> dict[str, str]:
        tags = real(repo, name)  # a genuine ls-remote ...
        if not reads:  # ... and only then does the rival claim the same number
            git(rival, "tag", "-a", "v2026.04.1", "-m", "rival claim")
            git(rival, "push", "-q", "origin", "v2026.04.1")
        reads.append(tags)
        return tags

    monkeypatch.setattr(calver, "_remote_tags", read_then_lose_the_race)
    got = next_version(late, "stable", month="2026.04")
    assert reads[0] == {}  # it really planned on N = 1
    assert got.version == "2026.04.2" and got.attempts == 2
    tags = remote_tags(remote)
    rival_head, late_head = git(rival, "rev-parse", "HEAD").strip(), git(late, "rev-parse", "HEAD").strip()
    assert tags["v2026.04.1"] == rival_head  # the rival's claim was not overwritten
    assert tags["v2026.04.2"] == tags["stable-2026.04.2"] == late_head
    assert "stable-2026.04.1" not in tags
    for name in ("v2026.04.1", "v2026.04.2", "stable-2026.04.2"):  # annotated: a second push is a conflict
        assert git(remote, "cat-file", "-t", f"refs/tags/{name}").strip() == "tag", name
    assert git(late, "tag", "-l", "v2026.04.1").strip() == ""  # the losing local tag was dropped


def test_refusals(remote: Path, tmp_path: Path):
    repo = clone(remote, tmp_path / "c")
    with pytest.raises(CalVerError, match="unknown channel"):
        next_version(repo, "deprecated")
    with pytest.raises(CalVerError, match="ls-remote"):
        next_version(repo, "dev", remote="nowhere")
    proc = subprocess.run([*AGNES, "release", "next-version", "--channel", "dev", "--repo", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "hint:" in proc.stderr
    assert highest(["v2026.04.2", "dev-2026.04.9", "x-2026.04.99", "v2026.05.50"], "2026.04") == 9
