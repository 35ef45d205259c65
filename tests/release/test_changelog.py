"""`agnes release changelog --check / --release` on a real temporary git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from agnes.release.changelog import ChangelogError, release, section_of
from tests.helpers import AGNES
from tests.release.test_calver import git

ROOT = Path(__file__).resolve().parents[2]
BASE = """# Changelog

## [Unreleased]

### Added
- Existing entry.

## [2026.04.1] - 2026-04-01

### Added
- First release.
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(r))
    (r / "CHANGELOG.md").write_text(BASE)
    (r / "src").mkdir()
    (r / "src" / "a.py").write_text("a = 1\n")
    (r / "docs").mkdir()
    (r / "docs" / "RELEASE_TEMPLATE.md").write_text((ROOT / "docs" / "RELEASE_TEMPLATE.md").read_text())
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "base")
    git(r, "branch", "base")
    git(r, "checkout", "-q", "-b", "feature")
    return r


def commit(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "change")


def check(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGNES, "release", "changelog", "--check", "--base", "base", "--repo", str(repo)],
                          capture_output=True, text=True)


def with_entry(entry: str) -> str:
    return BASE.replace("- Existing entry.\n", f"- Existing entry.\n{entry}")


def test_code_change_without_entry_fails_and_with_entry_passes(repo: Path):
    commit(repo, {"src/a.py": "a = 2\n"})
    res = check(repo)
    assert res.returncode == 1, res.stderr
    assert "src/a.py changed but CHANGELOG.md has no new entry" in res.stderr and "hint:" in res.stderr
    commit(repo, {"CHANGELOG.md": with_entry("- `a` is now 2.\n")})
    res = check(repo)
    assert res.returncode == 0 and "changelog ok" in res.stdout, res.stderr


def test_connectors_count_and_docs_do_not(repo: Path):
    commit(repo, {"docs/x.md": "hello\n"})
    assert check(repo).returncode == 0
    commit(repo, {"connectors/foo/extractor.py": "print(1)\n"})
    res = check(repo)
    assert res.returncode == 1 and "connectors/foo/extractor.py" in res.stderr


def test_breaking_entry_needs_a_migration_guide(repo: Path):
    commit(repo, {"src/a.py": "a = 3\n",
                  "CHANGELOG.md": with_entry("- **BREAKING:** `_meta` gains `owner`.\n")})
    res = check(repo)
    assert res.returncode == 1 and "BREAKING entry without a migration guide" in res.stderr
    commit(repo, {"CHANGELOG.md": with_entry("- **BREAKING:** `_meta` gains `owner`.\n"
                                             "  Migration: add an `owner VARCHAR` column in custom connectors.\n")})
    assert check(repo).returncode == 0


def test_non_breaking_prose_is_not_a_breaking_entry_and_star_bullets_count(repo: Path):
    commit(repo, {"src/a.py": "a = 4\n",
                  "CHANGELOG.md": with_entry("* NON-BREAKING: `a` is 4; nothing BREAKING here.\n")})
    res = check(repo)
    assert res.returncode == 0 and "changelog ok" in res.stdout, res.stderr  # a `* ` bullet is an entry
    commit(repo, {"CHANGELOG.md": with_entry("* **BREAKING** `a` is 4.\n")})
    res = check(repo)
    assert res.returncode == 1 and "BREAKING entry without a migration guide" in res.stderr
    commit(repo, {"CHANGELOG.md": with_entry("+ BREAKING: `a` is 4.\n")})
    assert "BREAKING entry without a migration guide" in check(repo).stderr


def test_a_breaking_commit_needs_a_breaking_entry_with_a_migration(repo: Path):
    (repo / "src" / "a.py").write_text("a = 5\n")
    (repo / "CHANGELOG.md").write_text(with_entry("- `a` is 5.\n"))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "Rename a\n\nBREAKING: callers must read a as 5.")
    commit(repo, {"docs/x.md": "later, unrelated\n"})  # the marker need not be on the last commit
    res = check(repo)
    assert res.returncode == 1, res.stderr
    assert "is marked BREAKING" in res.stderr and "'Rename a'" in res.stderr and "hint:" in res.stderr
    commit(repo, {"CHANGELOG.md": with_entry("- **BREAKING:** `a` is 5.\n")})
    assert "is marked BREAKING" in check(repo).stderr  # an entry without its migration is not enough
    commit(repo, {"CHANGELOG.md": with_entry("- **BREAKING:** `a` is 5.\n  Migration: read `a` as 5.\n")})
    res = check(repo)
    assert res.returncode == 0, res.stderr


def test_bad_base_is_an_environment_error_with_a_hint(repo: Path):
    res = subprocess.run([*AGNES, "release", "changelog", "--check", "--base", "nope", "--repo", str(repo)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "fetch-depth" in res.stderr and "hint:" in res.stderr


@pytest.mark.parametrize(("entry", "breaking"), [
    ("- **BREAKING:** `_meta` gains `owner`.\n  Migration: add it.\n", True),
    ("- NON-BREAKING: `_meta` docs.\n", False),
])
def test_release_json_says_whether_the_released_section_is_breaking(repo: Path, tmp_path: Path, entry: str,
                                                                     breaking: bool):
    import json

    (repo / "CHANGELOG.md").write_text(with_entry(entry))
    res = subprocess.run([*AGNES, "release", "changelog", "--release", "2026.04.3", "--json", "--repo", str(repo)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"version": "2026.04.3", "breaking": breaking, "notes": None}


def test_release_moves_unreleased_and_writes_notes(repo: Path, tmp_path: Path):
    notes = tmp_path / "notes.md"
    res = subprocess.run([*AGNES, "release", "changelog", "--release", "2026.04.3", "--date", "2026-04-08",
                          "--notes", str(notes), "--repo", str(repo)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    text = (repo / "CHANGELOG.md").read_text()
    assert text.index("## [Unreleased]") < text.index("## [2026.04.3] - 2026-04-08") < text.index("## [2026.04.1]")
    assert section_of(text, "2026.04.3") == "### Added\n- Existing entry.\n"
    assert "### Added" not in text[text.index("## [Unreleased]"):text.index("## [2026.04.3]")]
    assert "# Agnes 2026.04.3" in notes.read_text() and "- Existing entry." in notes.read_text()
    again = release(text, "2026.04.4", "2026-04-09")  # nothing new: an honest empty release
    assert section_of(again, "2026.04.4") == "No user-visible changes.\n"
    with pytest.raises(ChangelogError, match="already has a section"):
        release(text, "2026.04.3")
    with pytest.raises(ChangelogError, match="not a CalVer"):
        release(text, "1.2.3")


def test_the_project_changelog_has_the_layout():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text
    release(text, "2099.01.1")  # the real file can be released (BREAKING entries have migration guides)
